// orket-pipeline report page: the run table (sort, filter, pages) and the drill-down per run.
// Reads the runs from #orket-data (JSON, columns aligned by run index). Every text from the
// report goes onto the page through textContent or setAttribute, never innerHTML.
// State lives in the URL hash (#sort=-total_latency&outcome=fail&q=text&page=2, #run=ID[&n=K]), so a
// view of the table or a run can be linked.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("orket-data").textContent);
  var N = D.n, PAGE = D.pageSize;
  var num = D.num;
  // byId: each id's runs in order (a hand-written report may give an id twice); a run's hash
  // is #run=ID, with &n=K for the K-th run of an id given more than once.
  var byId = new Map(), nth = [];
  D.ids.forEach(function (id, i) {
    var runs = byId.get(id) || [];
    runs.push(i);
    byId.set(id, runs);
    nth.push(runs.length);
  });
  function runHash(i) {
    return "run=" + encodeURIComponent(D.ids[i]) + (nth[i] > 1 ? "&n=" + nth[i] : "");
  }
  var state = { key: null, dir: 1, text: "", outcome: -1, page: 0 };
  var KEYS = ["id", "outcome", "init_latency", "total_latency", "peak_memory_rss",
              "adherence_score", "why"];
  var view = [];
  var tbody = document.querySelector("#run-table tbody");
  var count = document.getElementById("run-count");
  var pager = document.getElementById("run-pager");
  var detail = document.getElementById("run-detail");

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function outcomeClass(outcome) {  // a fixed set: a report's text never becomes a class name
    return "outcome o-" + (["pass", "fail", "error"].indexOf(outcome) >= 0 ? outcome : "other");
  }
  function fmt(v) { return v === null || v === undefined ? "-" : Number(v).toFixed(3); }
  function why(i) {
    if (D.reason[i]) return D.reason[i];
    if (D.errType[i]) return D.errType[i] + (D.errMsg[i] ? ": " + D.errMsg[i] : "");
    return "";
  }
  function short(text, limit) {
    text = text.replace(/\s+/g, " ");
    return text.length <= limit ? text : text.slice(0, limit - 1) + "\u2026";
  }
  function value(key, i) {
    if (key === "id") return D.ids[i];
    if (key === "outcome") return D.outcomes[D.o[i]];
    if (key === "why") return why(i);
    return num[key][i];
  }

  function rebuild() {
    var text = state.text.toLowerCase(), out = state.outcome;
    view = [];
    for (var i = 0; i < N; i++) {
      if (out >= 0 && D.o[i] !== out) continue;
      if (text && D.ids[i].toLowerCase().indexOf(text) < 0 &&
          why(i).toLowerCase().indexOf(text) < 0) continue;
      view.push(i);
    }
    if (state.key) {
      var key = state.key, dir = state.dir;
      var keys = new Map(view.map(function (i) { return [i, value(key, i)]; }));
      view.sort(function (a, b) {
        var x = keys.get(a), y = keys.get(b);
        if (x === y) return a - b;
        if (x === null || x === undefined || x === "") return 1;  // empty cells last
        if (y === null || y === undefined || y === "") return -1;
        return (x < y ? -1 : 1) * dir;
      });
    }
  }

  function cell(row, text, cls) { row.appendChild(el("td", text, cls)); }

  function render() {
    var pages = Math.max(1, Math.ceil(view.length / PAGE));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    var start = state.page * PAGE, stop = Math.min(view.length, start + PAGE);
    tbody.replaceChildren();
    for (var k = start; k < stop; k++) {
      var i = view[k], row = el("tr");
      row.dataset.run = String(i);
      var idCell = el("td"), link = el("a", D.ids[i]);
      link.setAttribute("href", "#" + runHash(i));
      idCell.appendChild(link);
      row.appendChild(idCell);
      var outcome = D.outcomes[D.o[i]];
      cell(row, outcome, outcomeClass(outcome));
      ["init_latency", "total_latency", "peak_memory_rss", "adherence_score"].forEach(
        function (key) { cell(row, fmt(num[key][i]), "n"); });
      cell(row, short(why(i), 90), "why");
      tbody.appendChild(row);
    }
    count.dataset.matching = String(view.length);
    count.dataset.page = String(state.page + 1);
    count.dataset.pages = String(pages);
    count.textContent = view.length === 0 ? "no run matches (" + N.toLocaleString() + " in all)"
      : "runs " + (start + 1).toLocaleString() + " to " + stop.toLocaleString() + " of " +
        view.length.toLocaleString() + " matching (" + N.toLocaleString() + " in all)";
    renderPager(pages);
    document.querySelectorAll("#run-table th").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.key !== state.key ? "none"
        : state.dir > 0 ? "ascending" : "descending");
    });
  }

  function renderPager(pages) {
    pager.replaceChildren();
    [["\u00ab first", 0], ["\u2039 prev", state.page - 1], [null, 0],
     ["next \u203a", state.page + 1], ["last \u00bb", pages - 1]].forEach(function (b) {
      if (b[0] === null) {
        pager.appendChild(el("span", "page " + (state.page + 1) + " of " + pages));
        return;
      }
      var button = el("button", b[0]);
      button.type = "button";
      button.disabled = b[1] < 0 || b[1] >= pages || b[1] === state.page;
      button.addEventListener("click", function () { go(b[1]); });
      pager.appendChild(button);
    });
  }

  function go(page) {
    state.page = page;
    var params = new URLSearchParams();
    if (state.key) params.set("sort", (state.dir < 0 ? "-" : "") + state.key);
    if (state.outcome >= 0) params.set("outcome", D.outcomes[state.outcome]);
    if (state.text) params.set("q", state.text);
    params.set("page", String(page + 1));
    history.replaceState(null, "", "#" + params.toString());
    render();
  }

  function section(parent, title) {
    parent.appendChild(el("h3", title));
  }

  function facts(parent, pairs) {
    var dl = el("dl", null, "facts");
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined) return;
      var div = el("div");
      div.appendChild(el("dt", p[0]));
      var v = p[1];  // the report's numbers have three decimals; a library's may have more
      div.appendChild(el("dd", typeof v === "number" && !Number.isInteger(v) ? +v.toFixed(3) : v));
      dl.appendChild(div);
    });
    parent.appendChild(dl);
  }

  function showChecks(i) {
    if (!D.checks || !D.checks[i]) return;
    section(detail, "checks");
    var list = el("ul", null, "checks");
    D.checks[i].forEach(function (c) {
      var item = el("li", null, c[1] ? "ok" : "failed");
      item.appendChild(el("span", c[1] ? "\u2713 passed" : "\u2717 failed", "mark-word"));
      item.appendChild(el("code", D.checkNames[c[0]]));
      if (c[2]) item.appendChild(el("span", c[2], "detail"));
      list.appendChild(item);
    });
    detail.appendChild(list);
  }

  function showOutput(i) {
    if (!D.outLen || D.outLen[i] === null) {
      detail.appendChild(el("p", "output: not in the report", "note"));
      return;
    }
    section(detail, "output");
    var notes = [];
    if (D.out[i] === null) notes.push("left out of this page (its size budget); the report has it");
    else if (D.out[i].length < D.outLen[i]) notes.push("first " + D.out[i].length.toLocaleString() +
      " of " + D.outLen[i].toLocaleString() + " characters; the report has the rest");
    if (D.outTrunc[i]) notes.push("the report itself cut it at its output cap");
    if (notes.length) detail.appendChild(el("p", notes.join("; "), "note"));
    if (D.out[i] !== null) detail.appendChild(el("pre", D.out[i], "output"));
  }

  function open(i) {
    detail.replaceChildren();
    detail.hidden = false;
    var close = el("button", "close", "close");
    close.type = "button";
    close.addEventListener("click", function () { detail.hidden = true; go(state.page); });
    detail.appendChild(close);
    detail.appendChild(el("h2", D.ids[i], "run-id"));
    var outcome = D.outcomes[D.o[i]];
    detail.appendChild(el("p", outcome, outcomeClass(outcome)));
    if (D.extra.prompt && D.extra.prompt[i] !== null) {
      section(detail, "prompt");
      detail.appendChild(el("pre", D.extra.prompt[i], "output"));
    } else {
      detail.appendChild(el("p", "prompt: not recorded in the report", "note"));
    }
    if (D.reason[i]) { section(detail, "gate's reason"); detail.appendChild(el("pre", D.reason[i])); }
    if (D.errType[i]) {
      section(detail, "error");
      detail.appendChild(el("pre", D.errType[i] + (D.errMsg[i] ? ": " + D.errMsg[i] : "")));
    }
    showChecks(i);
    showOutput(i);
    section(detail, "telemetry");
    facts(detail, Object.keys(num).map(function (k) { return [k, num[k][i]]; }));
    var extra = Object.keys(D.extra).filter(function (k) { return k !== "prompt"; });
    if (extra.length) facts(detail, extra.map(function (k) { return [k, D.extra[k][i]]; }));
    detail.scrollTop = 0;
  }

  // #run=ID opens a run (on its page of the current view); otherwise the hash is the view:
  // #sort=-total_latency&outcome=fail&q=text&page=2 (every part optional).
  function route() {
    var params = new URLSearchParams(location.hash.slice(1));
    if (params.has("run")) {
      var runs = byId.get(params.get("run")) || [];
      var i = runs[(parseInt(params.get("n") || "1", 10) || 1) - 1];
      if (i !== undefined) {
        var at = view.indexOf(i);
        if (at >= 0) state.page = Math.floor(at / PAGE);
        render();
        open(i);
        return;
      }
    }
    var sort = params.get("sort") || "";
    state.dir = sort.charAt(0) === "-" ? -1 : 1;
    state.key = sort.replace(/^-/, "") || null;
    if (KEYS.indexOf(state.key) < 0) state.key = null;
    var outcome = params.get("outcome");  // "" is an outcome too (a report may say so)
    state.outcome = outcome === null ? -1 : D.outcomes.indexOf(outcome);
    state.text = params.get("q") || "";
    select.value = state.outcome >= 0 ? String(state.outcome) : "";
    filter.value = state.text;
    state.page = (parseInt(params.get("page") || "1", 10) || 1) - 1;
    rebuild();
    detail.hidden = true;
    render();
  }

  var select = document.getElementById("run-outcome");
  D.outcomes.forEach(function (name, code) {
    var option = el("option", name);
    option.value = String(code);
    select.appendChild(option);
  });
  select.addEventListener("change", function () {
    state.outcome = select.value === "" ? -1 : Number(select.value);
    rebuild(); go(0);
  });
  var filter = document.getElementById("run-filter"), timer = 0;
  filter.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.text = filter.value; rebuild(); go(0); }, 150);
  });
  document.querySelectorAll("#run-table th").forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.dataset.key;
      state.dir = state.key === key ? -state.dir : 1;
      state.key = key;
      rebuild(); go(0);
    });
  });
  tbody.addEventListener("click", function (event) {
    var row = event.target.closest("tr");
    if (row && event.target.tagName !== "A") location.hash = runHash(+row.dataset.run);
  });
  document.addEventListener("click", function (event) {
    var mark = event.target.closest ? event.target.closest(".run-link") : null;
    if (mark) location.hash = runHash(+mark.dataset.run);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !detail.hidden) { detail.hidden = true; go(state.page); }
  });
  window.addEventListener("hashchange", route);
  rebuild();
  route();
  document.body.dataset.ready = "1";
})();
