// Mirrors the form into the phone as it is typed; the body renders in a sandboxed frame.
(function () {
  function $(id) { return document.getElementById(id); }
  if (!$('content')) return;
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

// Forms with choices show only the fields that apply: an element marked
// data-when="msg_type:mpnews,news" shows while its form's msg_type is mpnews or news. Hidden
// fields are still sent, and the server reads only those that apply, so without this script
// the form shows everything and works the same.
(function () {
  var forms = document.querySelectorAll('form.choices');
  Array.prototype.forEach.call(forms, function (form) {
    var parts = form.querySelectorAll('[data-when]');
    function apply() {
      Array.prototype.forEach.call(parts, function (el) {
        var rule = el.getAttribute('data-when').split(':');
        var field = form.elements[rule[0]];
        el.hidden = !!field && rule[1].split(',').indexOf(field.value) < 0;
      });
    }
    form.addEventListener('change', apply);
    apply();
  });
})();
