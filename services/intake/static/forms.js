// What both Açık Kapı forms (the citizen's /basvuru and the counter's /gise) share: the checks a
// field passes before anything is sent, errors beside each field and in a summary that takes
// focus, the province's pickers, the position button, file uploads, and JSON calls.
// The server decides; these checks only spare the citizen a round trip. No storage is used.

// --- checks: each returns the Turkish message to show, or "" when the value is fine -----------

const LETTERS = "A-Za-zÇĞİÖŞÜÂÎÛçğıöşüâîû";
const NAME_RE = new RegExp(`^[${LETTERS}]+(?:[ '’\\-][${LETTERS}]+)*$`);
const TURKISH_ALPHABET = "abcçdefgğhıijklmnoöprsştuüvyz";
const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[A-Za-z]{2,63}$/;

export const clean = (text) => text.normalize("NFC").replace(/\s+/g, " ").trim();
export const turkishLower = (text) => text.replace(/I/g, "ı").replace(/İ/g, "i").toLowerCase();
export const turkishUpper = (text) => text.replace(/i/g, "İ").replace(/ı/g, "I").toUpperCase();

export function checkTckn(value) {
  const number = value.trim();
  if (!number) return "TC Kimlik No'yu yazın.";
  if (!/^\d+$/.test(number)) return "TC Kimlik No yalnızca rakamlardan oluşmalıdır.";
  if (number.length !== 11) return "TC Kimlik No 11 haneli olmalıdır.";
  if (number[0] === "0") return "TC Kimlik No 0 ile başlayamaz.";
  const d = [...number].map(Number);
  const odd = d[0] + d[2] + d[4] + d[6] + d[8];
  const even = d[1] + d[3] + d[5] + d[7];
  const tenth = (((odd * 7 - even) % 10) + 10) % 10;
  const eleventh = d.slice(0, 10).reduce((sum, digit) => sum + digit, 0) % 10;
  if (d[9] !== tenth || d[10] !== eleventh) {
    return "TC Kimlik No geçersiz: kontrol haneleri tutmuyor.";
  }
  return "";
}

function checkName(label, max) {
  return (value) => {
    const name = clean(value);
    if (!name) return `${label} yazın.`;
    if (name.length < 2 || name.length > max) {
      return `${label} 2 ile ${max} karakter arasında olmalıdır.`;
    }
    if (!NAME_RE.test(name)) {
      return `${label} yalnızca harf, boşluk, kesme işareti ve tire içerebilir.`;
    }
    return "";
  };
}

export const initialsOf = (value) => turkishUpper(value.normalize("NFC").replace(/[\s.]/g, ""));

function checkInitials(value) {
  const letters = initialsOf(value);
  if (!letters) return "Anne kızlık soyadının ilk ve son harfini yazın.";
  if (letters.length !== 2 || [...letters].some((ch) => !TURKISH_ALPHABET.includes(turkishLower(ch)))) {
    return "Anne kızlık soyadının ilk ve son harfi, Türk alfabesinden tam iki harf olmalıdır (ör. YZ).";
  }
  return "";
}

// The ten national digits of a Turkish mobile number in any common spelling, or null.
export function nationalMobile(value) {
  let digits = value.replace(/[\s\-().]/g, "");
  if (digits.startsWith("+90")) digits = digits.slice(3);
  else if (digits.startsWith("0090")) digits = digits.slice(4);
  else if (digits.startsWith("90") && digits.length === 12) digits = digits.slice(2);
  else if (digits.startsWith("0")) digits = digits.slice(1);
  return /^5\d{9}$/.test(digits) ? digits : null;
}

function checkPhone(value) {
  if (!value.trim()) return "Cep telefonu numaranızı yazın.";
  if (!nationalMobile(value)) {
    return "Telefon numarası geçerli bir Türkiye cep telefonu olmalıdır (ör. 0532 123 45 67).";
  }
  return "";
}

function checkEmail(value) {
  const email = value.trim();
  if (email && (email.length > 254 || !EMAIL_RE.test(email))) {
    return "E-posta adresi geçerli değil (ör. ad@ornek.com).";
  }
  return "";
}

function chosen(message) {
  return (value) => (value ? "" : message);
}

// Lengths come from the control's own minlength/maxlength, which the server's limits fill.
function checkLength(label, emptyMessage) {
  return (value, control) => {
    const text = value.trim();
    if (!text) return emptyMessage;
    const min = Number(control.getAttribute("minlength") || 0);
    const max = Number(control.getAttribute("maxlength") || Infinity);
    if (text.length < min || text.length > max) {
      return `${label} ${min} ile ${max} karakter arasında olmalıdır.`;
    }
    return "";
  };
}

function checkCode(value) {
  const code = value.trim();
  if (!code) return "SMS ile gelen 6 haneli doğrulama kodunu yazın.";
  if (!/^\d{6}$/.test(code)) return "Doğrulama kodu 6 rakamdan oluşur.";
  return "";
}

// By the field's name in the API (its `field` in an error list).
export const RULES = {
  "applicant.tckn": checkTckn,
  "applicant.first_name": (value, control) => checkName("Ad", Number(control.maxLength) || 50)(value),
  "applicant.last_name": (value, control) => checkName("Soyad", Number(control.maxLength) || 50)(value),
  "applicant.mother_maiden_initials": checkInitials,
  "applicant.phone": checkPhone,
  "applicant.email": checkEmail,
  application_type: chosen("Başvuru türünü seçin."),
  province_code: chosen("İli seçin."),
  district: chosen("İlçeyi seçin."),
  subject: checkLength("Konu", "Başvurunuzun konusunu yazın."),
  text: checkLength("Başvuru metni", "Başvuru metnini yazın."),
  code: checkCode,
};

// --- errors beside the fields and in the summary ------------------------------------------------

export class FormView {
  // aliases: an API field name → the field it is shown at (e.g. "phone_verification" → "code").
  constructor(form, { aliases = {} } = {}) {
    this.form = form;
    this.aliases = aliases;
    this.summary = document.getElementById("hata-ozeti");
    form.addEventListener("focusout", (event) => this.#recheck(event.target, true));
    form.addEventListener("input", (event) => this.#recheck(event.target, false));
  }

  control(path) {
    return this.form.querySelector(`[data-path="${path}"]`);
  }

  value(path) {
    const control = this.control(path);
    return control ? control.value : "";
  }

  // The error slot for an API field: its own, or the nearest enclosing group's ("applicant").
  #slot(path) {
    let name = this.aliases[path] ?? path;
    while (name) {
      const slot = this.form.querySelector(`[data-error-for="${name}"]`);
      if (slot) return { name, slot };
      name = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : "";
    }
    return null;
  }

  // Where a summary link takes the user: the field, or the first field of the group.
  #target(name) {
    const control = this.control(name) || this.form.querySelector(`[data-error-for="${name}"]`)
      ?.closest("fieldset, .field")?.querySelector("input:not([type=hidden]), select, textarea");
    return control && control.id ? control : null;
  }

  setError(path, message) {
    const found = this.#slot(path);
    if (!found) return null;
    found.slot.textContent = message;
    const control = this.control(found.name);
    if (control) control.setAttribute("aria-invalid", "true");
    return this.#target(found.name);
  }

  clearError(path) {
    const found = this.#slot(path);
    if (found) found.slot.textContent = "";
    const control = this.control(this.aliases[path] ?? path);
    if (control) control.removeAttribute("aria-invalid");
  }

  clearErrors() {
    for (const slot of this.form.querySelectorAll("[data-error-for]")) slot.textContent = "";
    for (const control of this.form.querySelectorAll("[aria-invalid]")) {
      control.removeAttribute("aria-invalid");
    }
    this.hideSummary();
  }

  // Runs every rule whose field is on this form; returns [{path, message}] for the bad ones.
  validate() {
    const errors = [];
    for (const [path, rule] of Object.entries(RULES)) {
      const control = this.control(path);
      if (!control || control.disabled) continue;
      const message = rule(control.value, control);
      if (message) errors.push({ path, message });
      else this.clearError(path);
    }
    return errors;
  }

  #recheck(control, leaving) {
    const path = control?.dataset?.path;
    const rule = path && RULES[path];
    if (!rule) return;
    const message = rule(control.value, control);
    if (!message) this.clearError(path);
    // Leaving a filled field says what is wrong with it; an empty one waits for the submit.
    else if (leaving && control.value.trim()) this.setError(path, message);
  }

  // Our own checks before sending (and `more` the page adds): true when the form may go;
  // otherwise the summary says why. What the server said last time is judged again.
  readyToSend(attachments, more = []) {
    this.clearErrors();
    const errors = [...this.validate(), ...more];
    if (attachments.uploading()) {
      errors.push({ path: "attachments", message: "Dosyalar yükleniyor; yüklenmeleri bitince gönderin." });
    }
    if (errors.length) this.showErrors(errors, "Lütfen aşağıdaki hataları düzeltin");
    return errors.length === 0;
  }

  // errors: [{path, message}] (our checks) or [{field, message}] (the API's list).
  showErrors(errors, title) {
    this.hideSummary();
    const list = this.summary.querySelector("ul");
    list.replaceChildren();
    for (const error of errors) {
      const path = error.path ?? error.field ?? "";
      const target = path ? this.setError(path, error.message) : null;
      const item = document.createElement("li");
      if (target) {
        const link = document.createElement("a");
        link.href = `#${target.id}`;
        link.textContent = error.message;
        link.addEventListener("click", (event) => {
          event.preventDefault();
          target.focus();
          target.closest(".field, fieldset")?.scrollIntoView({ block: "start" });
        });
        item.append(link);
      } else {
        item.textContent = error.message;
      }
      list.append(item);
    }
    if (title) this.summary.querySelector("h2").textContent = title;
    this.summary.hidden = false;
    this.summary.focus();
  }

  hideSummary() {
    this.summary.hidden = true;
  }
}

// --- calls to intake ---------------------------------------------------------------------------

const NETWORK_MESSAGE =
  "Sunucuya ulaşılamadı. İnternet bağlantınızı kontrol edip tekrar deneyin; bilgileriniz sayfada duruyor.";

// {status, ok, data, errors, retryAfter}; a network failure is status 0 with a Turkish error.
export async function callApi(path, { method = "GET", json, headers = {}, timeoutMs = 30000 } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  }
  init.signal = AbortSignal.timeout(timeoutMs);
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    return { status: 0, ok: false, data: null, retryAfter: null,
             errors: [{ field: null, code: "network", message: NETWORK_MESSAGE }] };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") ?? "", 10) || null;
  let errors = [];
  if (!response.ok) {
    errors = Array.isArray(data?.errors) && data.errors.length ? data.errors : [{
      field: null, code: `http_${response.status}`,
      message: `Beklenmeyen bir hata oluştu (HTTP ${response.status}). Lütfen biraz sonra tekrar deneyin.`,
    }];
    if (retryAfter && [429, 503].includes(response.status)) {
      errors = errors.map((e) => ({ ...e, message: withWait(e.message, retryAfter) }));
    }
  }
  return { status: response.status, ok: response.ok, data, errors, retryAfter };
}

export function withWait(message, seconds) {
  if (/saniye|dakika|saat|yarın/i.test(message)) return message;
  return `${message} (Yeniden denemeden önce ${waitText(seconds)} bekleyin.)`;
}

export function waitText(seconds) {
  if (seconds < 90) return `${seconds} saniye`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} dakika`;
  return `${Math.round(seconds / 3600)} saat`;
}

// One key per form fill: a double click or a retry registers the application once.
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID(); // only in secure contexts
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Buttons and inputs that only work with the scripts start disabled in the HTML.
export function enableScripted(root = document) {
  for (const control of root.querySelectorAll("[data-needs-js]")) control.disabled = false;
}

// --- the province's pickers -----------------------------------------------------------------------

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

export class Pickers {
  constructor(form) {
    this.province = form.querySelector("#province_code");
    this.district = form.querySelector("#district");
    this.heading = form.querySelector("#heading");
    this.category = form.querySelector("#category_code");
    this.status = form.querySelector("#katalog-durum");
    const embedded = document.getElementById("katalog");
    this.catalogue = embedded ? JSON.parse(embedded.textContent) : null;
    this.heading.addEventListener("change", () => this.#fillCategories());
    this.province.addEventListener("change", () => this.load(Number(this.province.value)));
    if (this.catalogue) this.#fillCategories();
    else this.load(Number(this.province.value));
  }

  async load(provinceCode, tries = 12) {
    const answer = await callApi(`/api/v1/catalogue?province_code=${provinceCode}`);
    if (answer.ok) {
      this.status.hidden = true;
      this.fill(answer.data);
      return true;
    }
    this.status.textContent = answer.errors[0].message;
    this.status.hidden = false;
    if ((answer.status === 503 || answer.status === 0) && tries > 1) {
      setTimeout(() => this.load(provinceCode, tries - 1), (answer.retryAfter ?? 5) * 1000);
    }
    return false;
  }

  fill(catalogue) {
    this.catalogue = catalogue;
    if (!this.province.querySelector(`option[value="${catalogue.province_code}"]`)) {
      this.province.append(option(catalogue.province_code, catalogue.province));
    }
    this.province.value = String(catalogue.province_code);
    this.district.replaceChildren(option("", "İlçe seçin"),
      ...catalogue.districts.map((name) => option(name, name)));
    this.heading.replaceChildren(option("", "Bilmiyorum"),
      ...catalogue.headings.map((h) => option(h.code, h.name)));
    this.#fillCategories();
  }

  reset() {
    if (this.catalogue) this.fill(this.catalogue);
  }

  // The categories of the heading chosen; with no heading, only "Bilmiyorum".
  #fillCategories() {
    const heading = this.catalogue?.headings.find((h) => h.code === this.heading.value);
    const categories = heading ? heading.categories : [];
    this.category.replaceChildren(option("", "Bilmiyorum"),
      ...categories.map((c) => option(c.code, c.name)));
    this.category.disabled = !heading;
  }
}

// --- the position, without a map (no tiles offline) ---------------------------------------------

export class Position {
  constructor(form) {
    this.lat = form.querySelector("#lat");
    this.lon = form.querySelector("#lon");
    this.use = form.querySelector("#konum-al");
    this.remove = form.querySelector("#konum-sil");
    this.status = form.querySelector("#konum-durum");
    if (!this.use) return; // the counter's form: the address alone
    if (!("geolocation" in navigator) || !window.isSecureContext) {
      this.use.hidden = true; // browsers give the position only over https or on this machine
      return;
    }
    this.use.addEventListener("click", () => this.#locate());
    this.remove.addEventListener("click", () => this.clear(true));
  }

  #locate() {
    this.status.textContent = "Konumunuz alınıyor…";
    this.use.disabled = true;
    navigator.geolocation.getCurrentPosition(
      (position) => {
        const { latitude, longitude, accuracy } = position.coords;
        this.lat.value = latitude.toFixed(6);
        this.lon.value = longitude.toFixed(6);
        const shown = (n) => n.toFixed(5).replace(".", ",");
        this.status.textContent = `Konumunuz eklendi: enlem ${shown(latitude)}, boylam ${shown(longitude)}` +
          (accuracy ? ` (yaklaşık ±${Math.round(accuracy)} m).` : ".");
        this.use.disabled = false;
        this.remove.hidden = false;
      },
      (error) => {
        this.status.textContent = {
          1: "Konum izni verilmedi. Yeri adresle yazabilirsiniz.",
          2: "Konumunuz belirlenemedi. Yeri adresle yazabilirsiniz.",
          3: "Konumunuz zamanında alınamadı. Tekrar deneyin ya da yeri adresle yazın.",
        }[error.code] ?? "Konumunuz alınamadı. Yeri adresle yazabilirsiniz.";
        this.use.disabled = false;
      },
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 },
    );
  }

  clear(announce = false) {
    this.lat.value = "";
    this.lon.value = "";
    if (!this.use) return;
    this.remove.hidden = true;
    this.status.textContent = announce ? "Konum kaldırıldı." : "";
    if (announce) this.use.focus();
  }

  coordinates() {
    return this.lat.value && this.lon.value
      ? { lat: Number(this.lat.value), lon: Number(this.lon.value) }
      : null;
  }
}

// --- attachments: uploaded as soon as they are chosen -------------------------------------------

const TYPES = { "application/pdf": /\.pdf$/i, "image/jpeg": /\.jpe?g$/i, "image/png": /\.png$/i };

export function sizeText(bytes) {
  if (bytes < 1024 * 1024) return `${Math.max(1, Math.round(bytes / 1024))} KB`;
  return `${(bytes / 1048576).toFixed(1).replace(".", ",")} MB`;
}

export class Attachments {
  // headers(): extra request headers (the counter's bearer token); onRefused(status): a 401/403.
  constructor(form, { headers = () => ({}), onRefused = () => {} } = {}) {
    this.input = form.querySelector("#ekler");
    this.list = form.querySelector("#ek-listesi");
    this.error = form.querySelector('[data-error-for="attachments"]');
    this.maxFiles = Number(this.input.dataset.maxFiles);
    this.maxBytes = Number(this.input.dataset.maxBytes);
    this.headers = headers;
    this.onRefused = onRefused;
    this.items = [];
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = ""; // the same file can be chosen again after a removal
    });
  }

  add(files) {
    const problems = [];
    for (const file of files) {
      const mb = Math.round(this.maxBytes / 1048576);
      if (this.items.filter((i) => i.state !== "failed").length >= this.maxFiles) {
        problems.push(`En çok ${this.maxFiles} dosya ekleyebilirsiniz; ${file.name} eklenmedi.`);
      } else if (!Object.entries(TYPES).some(([type, ext]) => file.type === type || ext.test(file.name))) {
        problems.push(`${file.name}: yalnızca PDF, JPEG veya PNG dosyası ekleyebilirsiniz.`);
      } else if (file.size > this.maxBytes) {
        problems.push(`${file.name}: dosya ${mb} MB'tan büyük olamaz (${sizeText(file.size)}).`);
      } else if (file.size === 0) {
        problems.push(`${file.name}: dosya boş.`);
      } else {
        this.#upload(this.#item(file));
      }
    }
    this.error.textContent = problems.join(" ");
    this.input.toggleAttribute("aria-invalid", problems.length > 0);
  }

  #item(file) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${file.name} (${sizeText(file.size)})`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link";
    remove.textContent = "Kaldır";
    remove.setAttribute("aria-label", `${file.name} dosyasını kaldır`);
    const progress = document.createElement("progress");
    progress.max = 1;
    progress.value = 0;
    progress.setAttribute("aria-label", `${file.name} yükleniyor`);
    const state = document.createElement("span");
    state.className = "state";
    state.setAttribute("role", "status");
    state.textContent = "Yükleniyor…";
    li.append(name, remove, progress, state);
    this.list.append(li);
    const item = { file, li, progress, stateText: state, state: "uploading", attachmentId: null, xhr: null };
    remove.addEventListener("click", () => this.remove(item));
    this.items.push(item);
    return item;
  }

  #upload(item) {
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open("POST", "/api/v1/attachments");
    xhr.setRequestHeader("Accept", "application/json");
    for (const [name, value] of Object.entries(this.headers())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) item.progress.value = event.loaded / event.total;
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status === 201 && data?.attachment_id) {
        item.attachmentId = data.attachment_id;
        this.#settle(item, "done", "Yüklendi.");
      } else {
        const message = data?.errors?.[0]?.message ?? `Dosya yüklenemedi (HTTP ${xhr.status}).`;
        this.#settle(item, "failed", message);
        this.error.textContent = `${item.file.name}: ${message}`;
        if (xhr.status === 401 || xhr.status === 403) this.onRefused(xhr.status);
      }
    });
    xhr.addEventListener("error", () => {
      this.#settle(item, "failed", "Bağlantı hatası: dosya yüklenemedi. Kaldırıp yeniden ekleyin.");
    });
    const body = new FormData();
    body.append("file", item.file, item.file.name);
    xhr.send(body);
  }

  #settle(item, state, text) {
    item.state = state;
    item.xhr = null;
    item.progress.value = state === "done" ? 1 : 0;
    item.progress.hidden = true;
    item.stateText.textContent = text;
    item.stateText.classList.add(state);
    item.li.dataset.state = state;
  }

  remove(item) {
    item.xhr?.abort();
    item.li.remove();
    this.items = this.items.filter((i) => i !== item);
    this.error.textContent = "";
    this.input.removeAttribute("aria-invalid");
    this.input.focus();
  }

  uploading() {
    return this.items.some((i) => i.state === "uploading");
  }

  ids() {
    return this.items.filter((i) => i.state === "done").map((i) => i.attachmentId);
  }

  clear() {
    for (const item of this.items) item.xhr?.abort();
    this.items = [];
    this.list.replaceChildren();
    this.error.textContent = "";
  }
}

// --- the identity consent of şikâyet and ihbar ---------------------------------------------------

// The types whose applicant the institution sees only with consent (events.SHIELDED_TYPES).
export const SHIELDED_TYPES = ["sikayet", "ihbar"];

// Shows the consent box for the shielded types only; a box hidden again is unticked, so a
// consent given for a şikâyet never travels with another type by accident.
export class IdentityConsent {
  constructor(form) {
    this.box = form.querySelector("#kimlik-izni");
    this.check = form.querySelector("#identity_consent");
    this.type = form.querySelector("#application_type");
    if (!this.box || !this.check || !this.type) return;
    this.type.addEventListener("change", () => this.update());
    form.addEventListener("reset", () => setTimeout(() => this.update()));
    this.update();
  }

  update() {
    const shown = SHIELDED_TYPES.includes(this.type.value);
    this.box.hidden = !shown;
    if (!shown) this.check.checked = false;
  }
}

// --- the application's body, as POST /api/v1/applications takes it ----------------------------

export function applicationBody(view, { channel, position, attachments }) {
  const value = (path) => view.value(path);
  const applicant = {
    tckn: value("applicant.tckn").trim(),
    first_name: clean(value("applicant.first_name")),
    last_name: clean(value("applicant.last_name")),
    mother_maiden_initials: initialsOf(value("applicant.mother_maiden_initials")),
    phone: value("applicant.phone").trim(),
  };
  const email = value("applicant.email").trim();
  if (email) applicant.email = email;
  const body = {
    channel,
    applicant,
    province_code: Number(value("province_code")),
    district: value("district"),
    application_type: value("application_type"),
    subject: value("subject").trim(),
    text: value("text").trim(),
  };
  const category = value("category_code");
  if (category) body.category_code = category;
  const consent = view.control("identity_consent");
  if (consent && SHIELDED_TYPES.includes(body.application_type)) {
    body.identity_consent = consent.checked;
  }
  const address = clean(value("location.address"));
  const coordinates = position.coordinates();
  if (coordinates) {
    body.location = address ? { ...coordinates, address } : coordinates;
  } else if (address) {
    // The API's location needs coordinates; an address alone travels with the text.
    body.text = `${body.text}\n\nAdres: ${address}`;
  }
  const ids = attachments.ids();
  if (ids.length) body.attachments = ids;
  return body;
}

// A button that says how long to wait and comes back by itself.
export function coolDown(button, seconds, label, waitingLabel = label) {
  clearInterval(button._coolDown);
  let left = Math.max(1, Math.round(seconds));
  button.disabled = true;
  button.textContent = `${waitingLabel} (${left} sn)`;
  button._coolDown = setInterval(() => {
    left -= 1;
    if (left <= 0) {
      clearInterval(button._coolDown);
      button.disabled = false;
      button.textContent = label;
    } else {
      button.textContent = `${waitingLabel} (${left} sn)`;
    }
  }, 1000);
}
