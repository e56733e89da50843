// The institutions' inbox (/kurum): list with filters, one application, and the workflow's acts
// (open, assign, ask the citizen, answer, return, forward, split); for Açık Kapı supervisors
// also the answers that wait for approval. The token is pasted once and kept in this tab's
// sessionStorage only; every call goes to tracking's own JSON API with `Authorization: Bearer`.
// Everything is drawn with textContent: no text from the server is ever read as HTML.

const TOKEN_KEY = "acikkapi.kurum.token";
const PAGE_SIZE = 25;

const main = document.getElementById("icerik");
const ACTIVE = (main.dataset.active || "").split(",");
const $ = (id) => document.getElementById(id);

const signIn = $("oturum");
const inbox = $("kutu");
const detail = $("ayrinti");
const approvals = $("onaylar");
const statusLine = $("durum");
const alertBox = $("hata");

const when = new Intl.DateTimeFormat("tr-TR", {
  dateStyle: "medium", timeStyle: "short", timeZone: "Europe/Istanbul",
});
const TYPES = Object.fromEntries([...$("tur").options].map((o) => [o.value, o.textContent]));
const OUTCOMES = Object.fromEntries(
  [...document.querySelectorAll("#f-answer input[name=outcome]")].map(
    (input) => [input.value, input.parentElement.textContent.trim()]),
);

let session = null; // {subject, role, institution_code, province_code}
let code = null; // the institution whose list is shown
let directory = null; // {districts, institutions, categories}
let cursor = null;
let current = null; // the application shown in detail
let opener = null; // the list's button that opened it (focus returns there)

// --- talking to the API ------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, { method = "GET", body, bearer = token() } = {}) {
  const headers = { Authorization: `Bearer ${bearer}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    return { ok: false, status: 0, errors: [{ field: null, message:
      "Sunucuya ulaşılamadı; bağlantınızı denetleyip yeniden deneyin." }] };
  }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (response.ok) return { ok: true, status: response.status, data };
  if (response.status === 401 && bearer === token()) {
    signOut("Oturumunuzun süresi doldu ya da anahtar geçersiz; lütfen yeniden oturum açın.");
  }
  const errors = (data && data.errors) || [{ field: null, message: "İstek işlenemedi." }];
  return { ok: false, status: response.status, errors };
}

function say(message) {
  statusLine.textContent = "";
  // A fresh text node, so screen readers announce the same message twice in a row too.
  window.setTimeout(() => { statusLine.textContent = message; }, 30);
}

function showErrors(errors) {
  alertBox.textContent = "";
  if (!errors || !errors.length) return;
  const heading = document.createElement("h2");
  heading.textContent = "İşlem yapılamadı";
  const list = document.createElement("ul");
  for (const error of errors) {
    const item = document.createElement("li");
    item.textContent = error.message;
    list.appendChild(item);
  }
  alertBox.append(heading, list);
  alertBox.focus();
}

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content == null ? "" : String(content);
  if (className) node.className = className;
  return node;
}

function date(iso) {
  return iso ? when.format(new Date(iso)) : "—";
}

// --- signing in and out --------------------------------------------------------------------------

async function start(value, { quiet = false } = {}) {
  $("token-error").textContent = "";
  $("token").removeAttribute("aria-invalid");
  const answer = await api("/api/v1/session", { bearer: value });
  if (!answer.ok) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(quiet ? "" : answer.errors[0].message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  session = answer.data;
  const province = session.province_code || Number(main.dataset.province);
  const found = await api(`/api/v1/directory/${province}`);
  directory = found.ok ? found.data : { districts: [], institutions: [], categories: [] };
  if (!found.ok) showErrors(found.errors);
  fillDirectory();
  const staff = session.role === "institution";
  code = staff ? session.institution_code : $("kurum").value || null;
  const name = directory.institutions.find((i) => i.code === code);
  $("kim").textContent = staff
    ? `${session.subject} · ${name ? name.name : code}`
    : `${session.subject} · Açık Kapı denetçisi`;
  $("kurum-alani").hidden = staff;
  signIn.hidden = true;
  inbox.hidden = false;
  approvals.hidden = staff;
  // Focus first, then load: a user who starts typing meanwhile keeps their place.
  $("asama").focus();
  if (!staff) await loadApprovals();
  await loadList();
}

function showSignIn(message = "") {
  inbox.hidden = true;
  detail.hidden = true;
  approvals.hidden = true;
  signIn.hidden = false;
  $("token-error").textContent = message;
  if (message) $("token").setAttribute("aria-invalid", "true");
  $("token").focus();
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  session = null;
  showSignIn(message);
}

$("oturum-formu").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim().replace(/^Bearer\s+/i, "");
  if (!value) {
    $("token-error").textContent = "Oturum anahtarını yapıştırın.";
    $("token").setAttribute("aria-invalid", "true");
    $("token").focus();
    return;
  }
  start(value);
});
$("oturum-kapat").addEventListener("click", () => signOut());

// --- the directory: districts, institutions, categories -------------------------------------------

function options(select, items, { empty } = {}) {
  select.textContent = "";
  if (empty !== undefined) select.appendChild(new Option(empty, ""));
  for (const [value, label] of items) select.appendChild(new Option(label, value));
}

function fillDirectory() {
  options($("ilce"), directory.districts.map((d) => [d, d]), { empty: "Tümü" });
  const institutions = directory.institutions.map((i) => [i.code, i.name]);
  options($("kurum"), institutions);
  options($("forward-to"), institutions, { empty: "Kurum seçin" });
}

$("kurum").addEventListener("change", () => {
  code = $("kurum").value;
  detail.hidden = true;
  loadList();
});

// --- the list ------------------------------------------------------------------------------------

function listQuery() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const stage = $("asama").value;
  if (stage === "aktif") params.set("active", "true");
  else if (stage) params.set("stage", stage);
  if ($("ilce").value) params.set("district", $("ilce").value);
  if ($("tur").value) params.set("type", $("tur").value);
  if ($("gecikmis").checked) params.set("overdue", "true");
  if ($("oncelikli").checked) params.set("priority", "true");
  if ($("ara").value.trim()) params.set("q", $("ara").value.trim());
  return params;
}

let listed = 0; // the latest list asked for: an older answer arriving late is dropped

async function loadList({ more = false, announce = true } = {}) {
  if (!code) return;
  const mine = ++listed;
  const params = listQuery();
  if (more && cursor) params.set("cursor", cursor);
  const answer = await api(`/api/v1/institutions/${encodeURIComponent(code)}/applications?${params}`);
  if (mine !== listed) return;
  if (!answer.ok) { showErrors(answer.errors); return; }
  const rows = $("satirlar");
  if (!more) rows.textContent = "";
  for (const item of answer.data.items) rows.appendChild(row(item));
  cursor = answer.data.next_cursor;
  $("daha").hidden = !cursor;
  $("bos").hidden = rows.children.length > 0;
  const total = answer.data.total;
  if (announce) say(`${total} başvuru listelendi${total > rows.children.length ? `; ilk ${rows.children.length} gösteriliyor` : ""}.`);
}

function row(item) {
  const tr = document.createElement("tr");
  if (item.overdue) tr.className = "late";
  const first = document.createElement("td");
  const open = text("button", item.application_number, "link number");
  open.type = "button";
  open.setAttribute("aria-label", `${item.application_number} numaralı başvuruyu göster`);
  open.addEventListener("click", () => { opener = open; showDetail(item.application_id); });
  first.appendChild(open);
  const subject = document.createElement("td");
  subject.appendChild(text("span", item.subject || "—"));
  if (item.priority) subject.append(" ", text("span", "Öncelikli", "badge"));
  if (item.parent_id) subject.append(" ", text("span", "Bölüm", "badge muted"));
  const deadline = document.createElement("td");
  deadline.appendChild(text("span", date(item.deadline_at)));
  if (item.overdue) deadline.append(" ", text("span", "Süresi geçti", "badge late"));
  tr.append(
    first, subject, text("td", TYPES[item.application_type] || "—"), text("td", item.district || "—"),
    text("td", item.stage_label), deadline,
  );
  return tr;
}

$("suzgec").addEventListener("submit", (event) => {
  event.preventDefault();
  detail.hidden = true;
  loadList();
});
$("daha").addEventListener("click", () => loadList({ more: true }));

// --- one application -------------------------------------------------------------------------------

let asked = 0; // the latest detail asked for: an older answer arriving late is dropped

async function showDetail(id, { focus = true } = {}) {
  const mine = ++asked;
  const answer = await api(
    `/api/v1/institutions/${encodeURIComponent(code)}/applications/${encodeURIComponent(id)}`);
  if (mine !== asked) return;
  if (!answer.ok) { showErrors(answer.errors); return; }
  current = answer.data;
  drawDetail(current);
  detail.hidden = false;
  if (focus) $("ayrinti-baslik").focus();
}

function fact(list, term, value) {
  if (value == null || value === "") return;
  list.append(text("dt", term), text("dd", value));
}

function drawDetail(app) {
  $("ayrinti-baslik").textContent = `Başvuru ${app.application_number}`;
  const facts = $("bilgiler");
  facts.textContent = "";
  fact(facts, "Aşama", app.stage_label);
  fact(facts, "Konu", app.subject);
  fact(facts, "Tür", TYPES[app.application_type]);
  fact(facts, "İlçe", app.district);
  fact(facts, "Kategori", app.category_code);
  fact(facts, "Öncelik", app.priority ? "Öncelikli başvuru sahibi" : null);
  fact(facts, "Başvuru tarihi", date(app.received_at));
  fact(facts, "Cevap için son gün", `${date(app.deadline_at)}${app.overdue ? " (süresi geçti)" : ""}`);
  fact(facts, "Açan", app.opened_by ? `${app.opened_by}, ${date(app.opened_at)}` : null);
  fact(facts, "Havale", [app.assignee, app.unit].filter(Boolean).join(" · ") || null);
  fact(facts, "Bu bölümün konusu", app.part_note);
  if (app.applicant) {
    const who = app.applicant;
    fact(facts, "Başvuru sahibi", `${who.first_name} ${who.last_name} (T.C. ${who.tckn_masked})`);
    fact(facts, "Telefon", who.phone);
    fact(facts, "E-posta", who.email);
  } else if (app.identity_shielded) {
    fact(facts, "Başvuru sahibi", app.identity_notice);
  }
  if (app.outcome) fact(facts, "Sonuç", OUTCOMES[app.outcome]);
  $("metin").textContent = app.text || "—";
  if (app.answer) $("metin").append(text("h4", "Cevap"), text("p", app.answer));

  const questions = $("sorular");
  questions.textContent = "";
  if (app.information_requests.length) {
    questions.appendChild(text("h3", "Vatandaştan istenen bilgiler"));
    const list = document.createElement("ol");
    for (const asked of app.information_requests) {
      const item = document.createElement("li");
      item.append(text("p", asked.question), text("p", `Soruldu: ${date(asked.asked_at)}`, "when"));
      if (asked.reply) item.append(text("p", `Cevap (${date(asked.replied_at)}): ${asked.reply}`));
      else if (asked.closed_at) item.append(text("p", "Cevap beklenmeden işleme devam edildi.", "when"));
      else item.append(text("p", "Vatandaşın cevabı bekleniyor.", "badge"));
      list.appendChild(item);
    }
    questions.appendChild(list);
  }

  const drafts = $("taslaklar");
  drafts.textContent = "";
  if (app.drafts.length) {
    drafts.appendChild(text("h3", "Onaya gönderilen cevaplar"));
    const list = document.createElement("ol");
    for (const draft of app.drafts) {
      const item = document.createElement("li");
      const verdict = draft.approved ? "Onaylandı"
        : draft.reviewed_at ? "Geri gönderildi" : "Onay bekliyor";
      item.append(text("p", `${OUTCOMES[draft.outcome]} · ${verdict}`), text("p", draft.text));
      if (draft.note) item.append(text("p", `Denetçinin notu: ${draft.note}`, "note"));
      list.appendChild(item);
    }
    drafts.appendChild(list);
  }

  const parts = $("bolumler");
  parts.textContent = "";
  if (app.parts.length) {
    parts.appendChild(text("h3", "Bölümler"));
    const list = document.createElement("ol");
    for (const part of app.parts) {
      const target = part.institution_code || part.category_code;
      const outcome = part.outcome ? ` · ${OUTCOMES[part.outcome]}` : " · cevap bekleniyor";
      list.appendChild(text("li", `${part.application_number} — ${part.note} (${target})${outcome}`));
    }
    parts.appendChild(list);
  }

  const timeline = $("gecmis");
  timeline.textContent = "";
  for (const entry of app.timeline) {
    const item = document.createElement("li");
    item.appendChild(text("strong", entry.label));
    const extra = [date(entry.at), entry.actor, entry.reason].filter(Boolean).join(" · ");
    item.appendChild(text("span", extra, "when"));
    timeline.appendChild(item);
  }

  // A supervisor reads every list but acts in no institution's name (an admin may stand in).
  const acts = session && ["institution", "admin"].includes(session.role);
  const allowed = new Set(acts ? app.actions : []);
  let any = false;
  for (const form of document.querySelectorAll(".actions form")) {
    form.hidden = !allowed.has(form.dataset.action);
    any ||= !form.hidden;
    if (!form.hidden) form.reset();
  }
  // Only an Açık Kapı supervisor (or an admin) may reveal a shielded applicant, with a reason.
  const unmask = $("f-unmask");
  unmask.hidden = !(session && ["supervisor", "admin"].includes(session.role)
    && app.identity_shielded);
  if (!unmask.hidden) unmask.reset();
  $("islem-yok").hidden = any || !unmask.hidden;
  if (allowed.has("forward")) {
    for (const option of $("forward-to").options) option.disabled = option.value === code;
  }
  if (allowed.has("split")) resetParts();
}

$("listeye-don").addEventListener("click", () => {
  detail.hidden = true;
  current = null;
  (opener && document.contains(opener) ? opener : $("asama")).focus();
});

// --- the acts ----------------------------------------------------------------------------------------

const DONE = {
  open: () => "Başvuru açıldı; açan olarak kaydedildiniz.",
  assign: () => "Başvuru havale edildi.",
  ask_information: () => "Soru kaydedildi; vatandaşa SMS ile haber veriliyor.",
  answer: (data) => (data.status === "awaiting_approval"
    ? "Cevabınız Açık Kapı denetçisinin onayına gönderildi."
    : "Cevabınız alındı; vatandaşa iletiliyor."),
  return: () => "Başvuru yönlendirmeye iade edildi.",
  forward: () => "Başvuru aktarıldı; artık seçtiğiniz kurumun listesinde.",
  split: () => "Başvuru bölümlere ayrıldı; her bölüm ilgili kuruma gönderiliyor.",
};
const PATHS = {
  open: "open", assign: "assign", ask_information: "information-request", answer: "response",
  return: "return", forward: "forward", split: "split",
};

function bodyOf(action, form) {
  const data = new FormData(form);
  const value = (name) => (data.get(name) || "").toString().trim();
  switch (action) {
    case "assign": {
      const body = {};
      if (value("assignee")) body.assignee = value("assignee");
      if (value("unit")) body.unit = value("unit");
      return body;
    }
    case "ask_information": return { question: value("question") };
    case "answer": return { outcome: value("outcome"), text: value("text") };
    case "return": return { reason: value("reason") };
    case "forward": return { institution_code: value("institution_code"), reason: value("reason") };
    case "split": return {
      parts: [...$("parcalar").querySelectorAll(".part")].map((part) => {
        const pick = (name) => part.querySelector(`[data-name=${name}]`).value.trim();
        const body = { note: pick("note") };
        if (pick("institution_code")) body.institution_code = pick("institution_code");
        else if (pick("category_code")) body.category_code = pick("category_code");
        return body;
      }),
    };
    default: return undefined;
  }
}

for (const form of document.querySelectorAll(".actions form")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current) return;
    const action = form.dataset.action;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const path = `/api/v1/institutions/${encodeURIComponent(code)}/applications/`
      + `${encodeURIComponent(current.application_id)}/${PATHS[action]}`;
    const answer = await api(path, { method: "POST", body: bodyOf(action, form) ?? {} });
    button.disabled = false;
    if (!answer.ok) { showErrors(answer.errors); return; }
    alertBox.textContent = "";
    say(DONE[action](answer.data));
    await refreshAfter(action, current.application_id);
  });
}

$("f-unmask").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!current) return;
  const form = event.currentTarget;
  const button = form.querySelector("button[type=submit]");
  const id = current.application_id;
  button.disabled = true;
  const reason = (new FormData(form).get("reason") || "").toString().trim();
  const answer = await api(`/api/v1/applications/${encodeURIComponent(id)}/unmask`,
    { method: "POST", body: { reason } });
  button.disabled = false;
  if (!answer.ok) { showErrors(answer.errors); return; }
  alertBox.textContent = "";
  say("Başvuru sahibinin kimliği kuruma açıldı; gerekçeniz denetim kaydına yazıldı.");
  if (current && current.application_id === id) await showDetail(id, { focus: false });
});

async function refreshAfter(action, id) {
  // An answer without approval goes through the responses topic: give it a moment to land.
  if (action === "answer") await new Promise((resolve) => { window.setTimeout(resolve, 600); });
  await loadList({ announce: false }); // the act's own message stays the one read out
  // Only if the same application is still the one shown (the user may have moved on).
  if (detail.hidden || !current || current.application_id !== id) return;
  if (["forward", "return", "split"].includes(action)) {
    // It has left this institution's hands: back to the list.
    detail.hidden = true;
    current = null;
    $("asama").focus();
    return;
  }
  await showDetail(id, { focus: false });
  if (current && current.application_id === id) $("ayrinti-baslik").focus();
}

// --- split parts ---------------------------------------------------------------------------------

let partCount = 0;

function addPart() {
  partCount += 1;
  const part = $("parca-sablonu").content.firstElementChild.cloneNode(true);
  part.querySelector("legend").textContent = `${partCount}. bölüm`;
  for (const field of part.querySelectorAll("[data-name]")) {
    const id = `parca-${partCount}-${field.dataset.name}`;
    field.id = id;
    field.name = id;
    field.previousElementSibling.htmlFor = id;
  }
  options(part.querySelector("[data-name=institution_code]"),
    directory.institutions.map((i) => [i.code, i.name]), { empty: "Kurum seçin" });
  options(part.querySelector("[data-name=category_code]"),
    directory.categories.map((c) => [c.code, `${c.heading} › ${c.name}`]), { empty: "Kategori seçin" });
  $("parcalar").appendChild(part);
  return part;
}

function resetParts() {
  $("parcalar").textContent = "";
  partCount = 0;
  addPart();
  addPart();
}

$("parca-ekle").addEventListener("click", () => {
  if (partCount >= 10) { say("En çok 10 bölüm olabilir."); return; }
  addPart().querySelector("select").focus();
});

// --- answers awaiting approval (supervisors) --------------------------------------------------------

async function loadApprovals() {
  const answer = await api("/api/v1/approvals?limit=50");
  const list = $("onay-listesi");
  list.textContent = "";
  if (!answer.ok) { showErrors(answer.errors); return; }
  for (const item of answer.data.items) list.appendChild(approvalItem(item));
  $("onay-yok").hidden = answer.data.items.length > 0;
}

function approvalItem(item) {
  const li = document.createElement("li");
  li.append(
    text("h3", `${item.application_number} · ${item.institution_name || item.institution_code}`),
    text("p", `${item.subject || ""} · ${OUTCOMES[item.draft.outcome]}`),
    text("p", item.draft.text, "text"),
  );
  const approve = text("button", "Onayla");
  approve.type = "button";
  const noteId = `not-${item.application_id}`;
  const label = text("label", "Geri gönderme notu");
  label.htmlFor = noteId;
  const note = document.createElement("input");
  note.id = noteId;
  note.maxLength = 1000;
  const back = text("button", "Notla geri gönder", "secondary");
  back.type = "button";
  const decide = async (path, body, done) => {
    const answer = await api(`/api/v1/approvals/${encodeURIComponent(item.application_id)}/${path}`,
      { method: "POST", body });
    if (!answer.ok) { showErrors(answer.errors); return; }
    say(done);
    await loadApprovals();
    $("onaylar-baslik").focus();
  };
  approve.addEventListener("click", () => decide("approve", {}, "Cevap onaylandı; vatandaşa iletiliyor."));
  back.addEventListener("click", () => decide("send-back", { note: note.value.trim() },
    "Cevap notunuzla kuruma geri gönderildi."));
  li.append(approve, label, note, back);
  return li;
}

// --- start ---------------------------------------------------------------------------------------------

if (token()) start(token(), { quiet: true });
