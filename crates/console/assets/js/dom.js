// Small DOM helpers: elements from a tag, attributes and children; a confirmation dialog; a
// notice line. Text always goes in as text nodes, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (name === 'value') {
      el.value = value;
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/// Asks before a change: resolves true when the user confirms. `detail` names what will
/// happen (the key, the number of keys, the member).
export function confirmAction(title, detail, action = 'Confirm') {
  return new Promise((resolve) => {
    const dialog = document.getElementById('confirm');
    clear(dialog.querySelector('.confirm-title'), title);
    clear(dialog.querySelector('.confirm-detail'), detail);
    const ok = dialog.querySelector('#confirm-ok');
    ok.textContent = action;
    const done = (answer) => {
      dialog.close();
      ok.onclick = null;
      dialog.querySelector('#confirm-cancel').onclick = null;
      resolve(answer);
    };
    ok.onclick = () => done(true);
    dialog.querySelector('#confirm-cancel').onclick = () => done(false);
    dialog.oncancel = () => done(false);
    dialog.showModal();
    ok.focus();
  });
}

/// A message line under a panel: `kind` is 'ok', 'error' or 'info'.
export function notice(el, kind, text) {
  el.className = `notice notice-${kind}`;
  el.textContent = text;
  el.hidden = !text;
}

export function errorText(error) {
  return error && error.message ? error.message : String(error);
}

/// Runs `fn` every `ms` while `isActive()` holds; returns a stop function.
export function every(ms, fn, isActive = () => true) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    if (isActive()) {
      try {
        await fn();
      } catch (e) {
        console.warn(e);
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
