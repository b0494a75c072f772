// The browser side of engine.widgets.grid.DataTable: DataTables (itables' offline bundle, imported from a blob, so
// no CDN) in server-side mode. Every page, sort and search is asked of Python through the `request` trait and
// answered in `response`; Python also pushes downloads (a custom message with the CSV bytes).
let bundle = null;

function loadDataTables(source) {
  if (bundle === null) {
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    bundle = import(url);
  }
  return bundle;
}

function download(msg, buffers) {
  const blob = new Blob([buffers[0]], { type: "text/csv;charset=utf-8" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = msg.filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

export default {
  async render({ model, el }) {
    const { default: DataTable } = await loadDataTables(model.get("_bundle"));
    const wrap = document.createElement("div");
    wrap.className = "cr-grid";
    el.appendChild(wrap);
    const pending = new Map();
    let dt = null;

    function build() {
      if (dt !== null) {
        dt.destroy();
        wrap.replaceChildren();
      }
      const table = document.createElement("table");
      table.className = "display compact cr-table";
      table.setAttribute("aria-label", model.get("label"));
      wrap.appendChild(table);
      const columns = model.get("columns").map((c, i) => ({ data: String(i), title: c.title, name: c.name }));
      if (columns.length === 0) return;
      dt = new DataTable(table, {
        serverSide: true,
        columns,
        order: [],
        pageLength: model.get("page_length"),
        lengthMenu: [10, 25, 50, 100],
        searchDelay: 300,
        scrollX: true,
        autoWidth: false,
        language: { search: "Search:", info: "Rows _START_ to _END_ of _TOTAL_", infoFiltered: "(of _MAX_ in all)" },
        ajax: (data, callback) => {
          pending.set(data.draw, callback);
          model.set("request", {
            draw: data.draw, start: data.start, length: data.length, search: data.search.value,
            order: data.order.map((o) => [o.column, o.dir]),
          });
          model.save_changes();
        },
        createdRow: (row) => { row.tabIndex = 0; },
      });
      dt.on("draw", () => {
        wrap.querySelectorAll("thead th").forEach((th, i) => {
          const tip = (model.get("columns")[i] || {}).tip;
          if (tip) th.title = tip;
        });
      });
    }

    model.on("change:response", () => {
      const r = model.get("response");
      const callback = pending.get(r.draw);
      if (callback) {
        pending.delete(r.draw);
        callback({ draw: r.draw, recordsTotal: r.total, recordsFiltered: r.filtered, data: r.rows });
      }
    });
    model.on("change:version", () => { if (dt !== null) dt.draw(); });
    model.on("change:columns", build);
    model.on("msg:custom", (msg, buffers) => { if (msg.type === "download") download(msg, buffers); });
    const open = (event) => {
      const row = event.target.closest("tr[data-pos]");
      if (row) model.send({ type: "open", pos: Number(row.dataset.pos) });
    };
    wrap.addEventListener("click", open);
    wrap.addEventListener("keydown", (event) => { if (event.key === "Enter") open(event); });
    build();
    return () => { if (dt !== null) dt.destroy(); };
  },
};
