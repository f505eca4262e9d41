"""A multi-line text box that commits while the user types, after a pause: live mode re-records as you type.

``st.text_area`` commits only on blur or Ctrl+Enter, and Streamlit's ``live=`` pause exists for ``st.text_input``
alone, which drops newlines (code needs them). streamlit-keyup has the pause but is a one-line input too. So this is
a small component of Streamlit's own Components v2 API (inline HTML, CSS and JS: nothing is fetched, it works
offline): a ``<textarea>`` that sends its text :data:`PAUSE_MS` after the last keystroke, at once on Ctrl+Enter
(⌘+Enter) or blur, as the text area does.

The text is mirrored into ``st.session_state[key]`` as a plain string, so the page reads it as it read the text
area's. A test drives it as the browser does, through the component's state:
``at.session_state[box_key(key)] = {"value": text}``.
"""

from __future__ import annotations

import streamlit as st

PAUSE_MS = 700
"""Commit this long after the last keystroke: long enough not to record every letter of a word."""

_HTML = """
<div class="lv">
  <label class="lv__label" id="label" for="text"></label>
  <textarea class="lv__text" id="text" spellcheck="false"></textarea>
  <div class="lv__hint" id="hint"></div>
</div>
"""

_CSS = """
.lv { display: flex; flex-direction: column; font-family: var(--st-font, sans-serif); width: 100%; }
.lv__label { font-size: 14px; margin-bottom: 4px; color: var(--st-text-color, inherit); }
.lv__text {
  box-sizing: border-box; width: 100%; resize: vertical; padding: 10px 12px; border-radius: 6px;
  border: 1px solid rgba(127, 127, 127, 0.3); background: var(--st-secondary-background-color, #f0f2f6);
  color: var(--st-text-color, inherit); font-family: var(--st-code-font, monospace); font-size: 14px;
  line-height: 1.5; outline: none;
}
.lv__text:focus { border-color: var(--st-primary-color, #ff4b4b); }
.lv__hint { font-size: 12px; opacity: 0.6; margin-top: 2px; min-height: 1.2em; }
"""

_JS = r"""
export default function({ parentElement, data, setStateValue }) {
  const text = parentElement.querySelector("#text");
  const hint = parentElement.querySelector("#hint");
  parentElement.querySelector("#label").textContent = data.label ?? "";
  text.placeholder = data.placeholder ?? "";
  text.style.height = `${data.height}px`;
  text.setAttribute("aria-label", data.label ?? "");
  parentElement._pause = data.pause;
  // Python echoes what it was sent: then the round trip is done. Anything else while the user is not typing is
  // Python seeding the box (its first value, or a value kept from another page), which the box adopts.
  const fromPython = data.value ?? "";
  parentElement._python = fromPython;
  if (fromPython === text.value) {
    text._typing = false;
    text._sent = undefined;
    hint.textContent = "";
  } else if (!text._typing) {
    text.value = fromPython;
  }
  if (parentElement._attached) return;
  let timer = null;
  const send = () => {
    clearTimeout(timer);
    if (text.value !== parentElement._python && text.value !== text._sent) {
      text._sent = text.value;
      hint.textContent = "recording…";
      setStateValue("value", text.value);
    }
  };
  text.addEventListener("input", () => {
    text._typing = true;
    clearTimeout(timer);
    timer = setTimeout(send, parentElement._pause);
  });
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); send(); }
  });
  text.addEventListener("blur", send);
  parentElement._attached = true;
}
"""

_component = st.components.v2.component("lstmviz_live_text", html=_HTML, css=_CSS, js=_JS, isolate_styles=True)


def box_key(key: str) -> str:
    """The component's own session key for the box whose text is kept under ``key``."""
    return f"_{key}_box"


def live_text_area(label: str, key: str, height: int = 120, placeholder: str = "", pause_ms: int = PAUSE_MS) -> str:
    """A text box whose text reaches the script ``pause_ms`` after the user stops typing (or on Ctrl+Enter or
    blur); returns it, and keeps it in ``st.session_state[key]``."""
    current = st.session_state.get(key, "")
    kept = st.session_state.get(box_key(key))
    if isinstance(kept, dict) and isinstance(kept.get("value"), str):
        current = kept["value"]

    def mirror() -> None:
        state = st.session_state.get(box_key(key))
        if isinstance(state, dict) and isinstance(state.get("value"), str):
            st.session_state[key] = state["value"]

    result = _component(
        data={"label": label, "value": current, "height": height, "placeholder": placeholder, "pause": pause_ms},
        default={"value": current},
        key=box_key(key),
        on_value_change=mirror,
    )
    text = result.value if isinstance(result.value, str) else current
    st.session_state[key] = text
    return text
