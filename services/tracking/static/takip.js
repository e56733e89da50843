/* The status page's check before the look-up: a mistyped application number or phone digits
   are caught in the page, before anything is sent. The server checks the same again
   (services/common/application_number.py); the Turkish texts come from the server, written
   into the form's data- attributes, so they are said in one place. Without JavaScript the
   form still works: the server answers it. */
(function () {
  "use strict";

  // Damm's quasigroup, the table python-stdnum's damm module uses (the number's check digit).
  var DAMM = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0]
  ];

  function dammValid(digits) {
    var interim = 0;
    for (var i = 0; i < digits.length; i++) {
      interim = DAMM[interim][digits.charCodeAt(i) - 48];
    }
    return interim === 0;
  }

  /* What is wrong with an application number: "format", "check_digit" or null. Spaces,
     hyphens and dots are the separators people add or drop, as on the server. */
  function numberProblem(text) {
    var digits = text.replace(/[\s\-.]/g, "");
    if (!/^[0-9]{14}$/.test(digits)) return "format";
    return dammValid(digits) ? null : "check_digit";
  }

  function phoneProblem(text) {
    return /^[0-9]{4}$/.test(text.trim()) ? null : "format";
  }

  window.AcikKapiTakip = { numberProblem: numberProblem, phoneProblem: phoneProblem };

  function setError(input, message) {
    var error = document.getElementById(input.id + "-error");
    var hint = input.id + "-hint";
    error.textContent = message || "";
    if (message) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", hint + " " + error.id);
    } else {
      input.removeAttribute("aria-invalid");
      input.setAttribute("aria-describedby", hint);
    }
  }

  function showSummary(summary, title, problems) {
    summary.textContent = "";
    if (!problems.length) return;
    var heading = document.createElement("h2");
    heading.textContent = title;
    var list = document.createElement("ul");
    problems.forEach(function (problem) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = "#" + problem.input.id;
      link.textContent = problem.message;
      item.appendChild(link);
      list.appendChild(item);
    });
    summary.appendChild(heading);
    summary.appendChild(list);
  }

  function start() {
    var form = document.getElementById("takip-formu");
    var summary = document.getElementById("hata-ozeti");
    if (!form || !summary) return;
    var number = document.getElementById("number");
    var phone = document.getElementById("phone_last4");
    var messages = form.dataset;
    var baseTitle = document.title.replace(/^Hata — /, "");

    function problems() {
      var found = [];
      var numberKind = numberProblem(number.value);
      if (numberKind) {
        found.push({
          input: number,
          message: numberKind === "check_digit" ? messages.numberCheckDigit : messages.numberFormat
        });
      }
      if (phoneProblem(phone.value)) found.push({ input: phone, message: messages.phone });
      return found;
    }

    form.addEventListener("submit", function (event) {
      var found = problems();
      [number, phone].forEach(function (input) {
        var mine = found.filter(function (p) { return p.input === input; })[0];
        setError(input, mine && mine.message);
      });
      if (!found.length) return; // the server looks it up
      event.preventDefault();
      document.title = "Hata — " + baseTitle;
      showSummary(summary, messages.summary, found);
      found[0].input.focus();
    });

    // A field that has been put right loses its error as the citizen types.
    [number, phone].forEach(function (input) {
      input.addEventListener("input", function () {
        if (input.getAttribute("aria-invalid") !== "true") return;
        var still = problems().some(function (p) { return p.input === input; });
        if (!still) setError(input, null);
      });
    });

    // After the server answered: take the reader to the errors or to the result.
    var result = document.getElementById("sonuc-baslik");
    if (summary.textContent.trim()) summary.focus();
    else if (result) result.focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
