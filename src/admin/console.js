// Mirrors the form into the phone as it is typed; the body renders in a sandboxed frame.
(function () {
  function $(id) { return document.getElementById(id); }
  function update() {
    $('preview-title').textContent = $('title').value || 'Title';
    $('preview-digest').textContent = $('digest').value;
    var url = $('cover_url').value;
    $('preview-cover').style.backgroundImage = /^https?:\/\//.test(url) ? 'url("' + url.replace(/"/g, '%22') + '")' : '';
    $('preview-body').srcdoc = '<body style="font:15px/1.6 sans-serif;margin:10px">' +
      '<h3>' + $('title').value.replace(/[&<>]/g, function (c) { return {'&': '&amp;', '<': '&lt;', '>': '&gt;'}[c]; }) + '</h3>' +
      $('content').value + '</body>';
  }
  ['title', 'digest', 'cover_url', 'content'].forEach(function (id) { $(id).addEventListener('input', update); });
  update();
})();
