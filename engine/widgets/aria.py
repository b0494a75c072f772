"""Widgets ipywidgets cannot make accessible: a live region for the decision card, a checkbox with its own name."""

from __future__ import annotations

import anywidget
import traitlets

# The region is made once and only its contents change: a live region replaced wholesale (what ipywidgets.HTML
# does with its value) is not reliably announced, since screen readers watch regions that already exist.
_LIVE = """
function render({ model, el }) {
  const region = document.createElement("div");
  region.className = "cr-live";
  region.setAttribute("role", "status");
  region.setAttribute("aria-live", "polite");
  region.setAttribute("aria-atomic", "true");
  if (model.get("label")) region.setAttribute("aria-label", model.get("label"));
  const show = () => { region.innerHTML = model.get("value"); };
  show();
  model.on("change:value", show);
  el.appendChild(region);
  return () => model.off("change:value", show);
}
export default { render };
"""

# ipywidgets names a checkbox by its visible description only; four boxes all reading "not given" need names
# of their own ("Hours since contact not given") while the page still shows the short text.
_CHECKBOX = """
function render({ model, el }) {
  const label = document.createElement("label");
  label.className = "cr-checkbox";
  label.style.cssText = "display:inline-flex;align-items:center;gap:4px;font-size:var(--jp-widgets-font-size,13px);"
    + "line-height:28px;white-space:nowrap;cursor:pointer";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.setAttribute("aria-label", model.get("name"));
  label.append(box, document.createTextNode(model.get("text")));
  const show = () => { box.checked = model.get("value"); };
  show();
  box.addEventListener("change", () => { model.set("value", box.checked); model.save_changes(); });
  model.on("change:value", show);
  el.appendChild(label);
  return () => model.off("change:value", show);
}
export default { render };
"""


class LiveHTML(anywidget.AnyWidget):
    """HTML in a polite, atomic live region (role=status): each new value is announced as a whole."""

    _esm = traitlets.Unicode(_LIVE).tag(sync=True)
    value = traitlets.Unicode("").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)

    def __init__(self, value: str = "", label: str = "") -> None:
        super().__init__(value=value, label=label)


class NamedCheckbox(anywidget.AnyWidget):
    """A checkbox showing a short text and named, for assistive technology, by a longer one that contains it."""

    _esm = traitlets.Unicode(_CHECKBOX).tag(sync=True)
    value = traitlets.Bool(False).tag(sync=True)
    text = traitlets.Unicode("").tag(sync=True)
    name = traitlets.Unicode("").tag(sync=True)

    def __init__(self, value: bool, text: str, name: str) -> None:
        super().__init__(value=value, text=text, name=name)
