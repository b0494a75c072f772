"""NumberSlider: a labelled range slider with a number box beside it, both named for assistive technology (an
ipywidgets slider's handle has no accessible name), typed values applied as typed after a pause."""

from __future__ import annotations

import anywidget
import traitlets

DEBOUNCE_MS = 400  # a typed number applies this long after the last key (or at once on Enter or leaving the box)

_ESM = """
export default {
  render({ model, el }) {
    const id = "cr-slider-" + Math.random().toString(36).slice(2);
    const box = document.createElement("div");
    box.className = "cr-slider";
    box.style.cssText = "display:flex;align-items:center;gap:8px;margin:2px 0;font:13px system-ui,sans-serif";
    const label = document.createElement("label");
    label.htmlFor = id;
    label.style.cssText = "width:230px;text-align:right";
    const range = document.createElement("input");
    range.type = "range";
    range.id = id;
    range.style.width = "260px";
    const number = document.createElement("input");
    number.type = "number";
    number.style.width = "90px";
    const help = document.createElement("span");
    help.style.color = "#555";
    box.append(label, range, number, help);
    el.appendChild(box);
    let timer = null;
    function show() {
      const name = model.get("label");
      label.textContent = name;
      number.setAttribute("aria-label", name);
      help.textContent = model.get("help");
      help.id = id + "-help";
      range.setAttribute("aria-describedby", help.id);
      for (const input of [range, number]) {
        input.min = model.get("min");
        input.max = model.get("max");
        input.step = model.get("step");
      }
      range.value = model.get("value");
      range.setAttribute("aria-valuetext", model.get("value") + " " + model.get("unit"));
      if (document.activeElement !== number) number.value = model.get("value");
      number.removeAttribute("aria-invalid");
    }
    function commit(text) {
      clearTimeout(timer);
      const value = Number(text);
      const low = model.get("lowest"), high = model.get("highest");
      if (text === "" || !Number.isFinite(value) || (low !== null && value < low) || (high !== null && value > high)) {
        number.setAttribute("aria-invalid", "true");
        return;
      }
      number.removeAttribute("aria-invalid");
      if (value !== model.get("value")) {
        model.set("value", value);
        model.save_changes();
      }
    }
    range.addEventListener("input", () => { number.value = range.value; });
    range.addEventListener("change", () => commit(range.value));
    number.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => commit(number.value), model.get("debounce_ms"));
    });
    number.addEventListener("change", () => commit(number.value));
    number.addEventListener("keydown", (event) => { if (event.key === "Enter") commit(number.value); });
    model.on("change", show);
    show();
  },
};
"""


class NumberSlider(anywidget.AnyWidget):
    """A number chosen with a slider (min..max by step) or typed (any value from `lowest` to `highest`, which
    may lie past the slider's ends); `label` names both inputs, `help` describes them."""

    _esm = _ESM
    value = traitlets.Float(0.0).tag(sync=True)
    min = traitlets.Float(0.0).tag(sync=True)
    max = traitlets.Float(100.0).tag(sync=True)
    step = traitlets.Float(1.0).tag(sync=True)
    lowest = traitlets.Float(None, allow_none=True).tag(sync=True)  # what may be typed
    highest = traitlets.Float(None, allow_none=True).tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    unit = traitlets.Unicode("").tag(sync=True)
    help = traitlets.Unicode("").tag(sync=True)
    debounce_ms = traitlets.Int(DEBOUNCE_MS).tag(sync=True)

    @traitlets.validate("value")
    def _within(self, proposal: traitlets.Bunch) -> float:
        value = float(proposal["value"])
        if (self.lowest is not None and value < self.lowest) or (self.highest is not None and value > self.highest):
            raise traitlets.TraitError(f"{self.label or 'value'}: {value:g} is outside "
                                       f"{self.lowest if self.lowest is not None else '-inf'}.."
                                       f"{self.highest if self.highest is not None else 'inf'}")
        if value > self.max:  # a typed value past the slider's end moves the end
            self.max = value
        return value
