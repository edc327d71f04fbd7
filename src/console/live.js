// Live updates for the missionctl fleet console: progressive enhancement.
// Every page reads and works without this script. When the server says
// that something this session may see changed (/ui/events), the page's
// main section is fetched again and swapped in, unless a form on it is
// being filled in (then a note offers to reload).
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var main = document.querySelector("main[data-live]");
  if (!main) {
    return;
  }
  var busy = false;
  var note = null;

  function editing() {
    var a = document.activeElement;
    if (a && main.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName)) {
      return true;
    }
    var fields = main.querySelectorAll("form[method=post] input[type=text], form[method=post] input[type=checkbox]");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === "checkbox" ? f.checked : f.value !== "") {
        return true;
      }
    }
    return false;
  }

  function offer() {
    if (note) {
      return;
    }
    note = document.createElement("p");
    note.className = "live-note";
    note.setAttribute("role", "status");
    var link = document.createElement("a");
    link.href = window.location.href;
    link.textContent = "This page changed: reload";
    note.appendChild(link);
    main.insertBefore(note, main.firstChild);
  }

  function reload() {
    if (busy) {
      return;
    }
    if (editing()) {
      offer();
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (!text) {
          return;
        }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.querySelector("main[data-live]");
        if (fresh) {
          main.replaceWith(fresh);
          main = fresh;
          note = null;
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
      });
  }

  var source = new EventSource("/ui/events");
  source.addEventListener("change", reload);
})();
