// The article body's editor: Quill (src/admin/vendor/quill) over the body's textarea. The textarea
// stays the form's `content` field: the editor writes its HTML there on every change, so the page
// posts what it always posted and the server's allow-list (src/campaigns/html.rs) has the last
// word. Without JavaScript (or without Quill) the textarea is simply there.
//
// The image button uploads a JPEG or PNG (at most 1 MB) to POST /admin/images, which hands it to
// WeChat (media/uploadimg) and answers the URL WeChat hosts it at; the editor inserts that URL.
(function () {
  var area = document.getElementById('content');
  if (!area || !window.Quill) return;
  var MAX_IMAGE = 1024 * 1024;
  var form = area.form;
  var token = form && form.querySelector('input[name=form_token]');

  // Alignment as `style="text-align: …"` (which the allow-list keeps), not Quill's classes.
  Quill.register(Quill.import('attributors/style/align'), true);

  var holder = document.createElement('div');
  holder.id = 'content-editor';
  var status = document.createElement('div');
  status.id = 'editor-status';
  status.setAttribute('role', 'status');
  var picker = document.createElement('input');
  picker.type = 'file';
  picker.id = 'image-file';
  picker.accept = 'image/jpeg,image/png';
  picker.hidden = true;
  area.parentNode.insertBefore(holder, area);
  area.parentNode.insertBefore(status, area.nextSibling);
  area.parentNode.insertBefore(picker, status);
  area.hidden = true;

  var quill = new Quill(holder, {
    theme: 'snow',
    placeholder: '正文 Body',
    modules: {
      toolbar: {
        container: [
          [{ header: [1, 2, 3, 4, false] }],
          ['bold', 'italic', 'underline', 'strike'],
          [{ align: [] }],
          ['blockquote', { list: 'ordered' }, { list: 'bullet' }],
          ['link', 'image'],
          ['clean']
        ],
        handlers: { image: function () { picker.value = ''; picker.click(); } }
      }
    }
  });
  // The toolbar's buttons say what they do (Quill gives them no title).
  var titles = {
    'ql-header': '段落格式 Paragraph style', 'ql-bold': '粗体 Bold', 'ql-italic': '斜体 Italic',
    'ql-underline': '下划线 Underline', 'ql-strike': '删除线 Strikethrough', 'ql-align': '对齐 Alignment',
    'ql-blockquote': '引用 Quote', 'ql-link': '链接 Link', 'ql-image': '上传图片 Upload an image (JPEG/PNG, ≤ 1 MB)',
    'ql-clean': '清除格式 Clear formatting'
  };
  var lists = { ordered: '编号列表 Numbered list', bullet: '项目符号列表 Bulleted list' };
  Array.prototype.forEach.call(holder.previousSibling.querySelectorAll('button, .ql-picker'), function (b) {
    var name = Object.keys(titles).filter(function (c) { return b.classList.contains(c); })[0];
    var title = b.value && lists[b.value] ? lists[b.value] : titles[name];
    if (title) { b.title = title; b.setAttribute('aria-label', title); }
  });
  if (area.value) quill.setContents(quill.clipboard.convert({ html: area.value }), 'silent');

  // Quill 2.0.3's getSemanticHTML writes every space as &nbsp; (fixed upstream later); text it
  // escapes has no other &nbsp;, so they all go back to spaces.
  function html() {
    if (quill.getLength() <= 1 && !quill.root.querySelector('img')) return '';
    return quill.getSemanticHTML().replace(/&nbsp;/g, ' ');
  }
  function sync() {
    area.value = html();
    area.dispatchEvent(new Event('input')); // the live preview (console.js) listens
  }
  quill.on('text-change', sync);
  if (form) form.addEventListener('submit', sync);

  function say(text, bad) {
    status.textContent = text;
    status.className = bad ? 'error' : 'notice';
  }

  picker.addEventListener('change', function () {
    var file = picker.files && picker.files[0];
    if (!file) return;
    if (!/^image\/(jpeg|png)$/.test(file.type)) return say('只能上传 JPEG 或 PNG 图片 · An article image must be a JPEG or PNG', true);
    if (file.size > MAX_IMAGE) return say('图片不能超过 1 MB · An article image is at most 1 MB', true);
    var range = quill.getSelection(true);
    say('上传中… Uploading…', false);
    fetch('/admin/images', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': file.type, 'X-Form-Token': token ? token.value : '' },
      body: file
    }).then(function (r) {
      return r.json().catch(function () { return { error: 'HTTP ' + r.status }; });
    }).then(function (answer) {
      if (!answer.url) return say(answer.error || '上传失败 · Upload failed', true);
      var at = range ? range.index : quill.getLength();
      quill.insertEmbed(at, 'image', answer.url, 'user');
      quill.setSelection(at + 1, 0, 'silent');
      say('图片已上传 · Image uploaded', false);
    }, function () {
      say('上传失败，请重试 · Upload failed; please try again', true);
    });
  });
})();
