/* Sortable leaderboard tables: a button in each header cell sorts the rows by that column.
   The first press puts the best value first (by the column's data-direction), the next reverses.
   Rows without a value stay last. Values come from data-value attributes; nothing is parsed out of
   the page text and nothing is written as HTML. */
(function () {
  "use strict";

  function sortValue(cell, numeric) {
    var raw = cell.getAttribute("data-value");
    if (raw === null || raw === "") {
      return null;
    }
    return numeric ? parseFloat(raw) : raw.toLowerCase();
  }

  function compare(a, b) {
    if (a === null && b === null) { return 0; }
    if (a === null) { return 1; }
    if (b === null) { return -1; }
    return a < b ? -1 : (a > b ? 1 : 0);
  }

  function sortBy(table, button) {
    var header = button.closest("th");
    var column = parseInt(button.getAttribute("data-column"), 10);
    var direction = header.getAttribute("data-direction");
    var numeric = direction !== "text";
    var first = direction === "lower" || direction === "text" ? "ascending" : "descending";
    var order = header.getAttribute("aria-sort") === first
      ? (first === "ascending" ? "descending" : "ascending") : first;
    table.querySelectorAll("thead th[aria-sort]").forEach(function (other) {
      other.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", order);
    var sign = order === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (x, y) {
      var a = sortValue(x.cells[column], numeric);
      var b = sortValue(y.cells[column], numeric);
      if (a === null || b === null) { return compare(a, b); }
      return sign * compare(a, b);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    var status = document.getElementById(table.getAttribute("data-status"));
    if (status) {
      status.textContent = "Sorted by " + button.textContent.trim() + ", " + order + ".";
    }
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead button[data-column]").forEach(function (button) {
      button.addEventListener("click", function () { sortBy(table, button); });
    });
  });
}());
