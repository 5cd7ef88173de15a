// gaitid console: one ES module, no dependencies, no build step.
//
// It is a client of the service's own API, from the same origin: the operator's key is typed
// into a form, kept in sessionStorage only (gone with the tab) and sent as X-API-Key by fetch.
// The page asks the API what the key may do (GET /me) and shows only that. Every DOM node
// is built with createElement/textContent (no innerHTML), so names and metadata are never
// parsed as HTML; the Content-Security-Policy forbids inline script and style anyway.

const KEY_STORE = "gaitid.apiKey";

// ------------------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const session = {
  key: sessionStorage.getItem(KEY_STORE),
  me: null, // GET /me: {id, name, scopes, galleries}
  galleries: null, // names offered in gallery fields
  flash: null, // a message for the next page drawn
  flashOk: false,
};

async function api(path, { method = "GET", json, form, raw = false } = {}) {
  const headers = { "X-API-Key": session.key || "" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser writes the multipart boundary
  }
  const response = await fetch(path, { method, headers, body, credentials: "omit" });
  if (!response.ok) {
    let error = { code: "http_error", message: `${response.status} ${response.statusText}` };
    try {
      error = (await response.json()).error || error;
    } catch {
      // not the service's JSON error body: keep the status line
    }
    if (response.status === 401 && path !== "/me") forgetKey(error.message);
    throw new ApiError(response.status, error.code, error.message, error.details);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

// --------------------------------------------------------------------------- the DOM

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (selector) => document.querySelector(selector);

function show(...nodes) {
  $("#view").replaceChildren(...nodes);
}

function notify(message, ok = false) {
  const notice = $("#notice");
  notice.textContent = message;
  notice.classList.toggle("ok", ok);
  notice.hidden = !message;
}

function reportError(error) {
  if (error instanceof ApiError) {
    notify(`${error.message} (${error.status} ${error.code})`);
  } else {
    notify(String(error && error.message ? error.message : error));
  }
}

// One busy flag per button: a second click while a request runs does nothing.
async function busy(button, work) {
  if (button.disabled) return;
  button.disabled = true;
  notify("");
  try {
    await work();
  } catch (error) {
    reportError(error);
  } finally {
    button.disabled = false;
  }
}

// The erase dialog names exactly what goes; resolves true when the operator confirms.
function confirmErase(title, text) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

const fmt = {
  score: (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(3)),
  date: (text) => (text ? new Date(text).toLocaleString() : "–"),
  json: (value) => (value === null || value === undefined ? "" : JSON.stringify(value)),
};

// --------------------------------------------------------------------- what the key may do

const can = {
  enroll: () => has("enroll") || has("admin"),
  identify: () => has("identify") || has("admin"),
  admin: () => has("admin"),
  everyGallery: () => session.me && session.me.galleries === null,
};

function has(scope) {
  return Boolean(session.me && session.me.scopes.includes(scope));
}

const PAGES = [
  { hash: "#/galleries", label: "Galleries", allowed: can.enroll },
  { hash: "#/enrol", label: "Enrol", allowed: can.enroll },
  { hash: "#/identify", label: "Identify", allowed: can.identify },
  { hash: "#/verify", label: "Verify", allowed: can.identify },
  { hash: "#/model", label: "Model", allowed: () => true },
  { hash: "#/health", label: "Health", allowed: () => true },
];

function drawHeader() {
  // the page's section: a gallery's or an identity's page belongs to the galleries
  const section = location.hash.split("?")[0].split("/").slice(0, 2).join("/");
  const current = ["#/gallery", "#/identity"].includes(section) ? "#/galleries" : section;
  const links = session.me
    ? PAGES.filter((page) => page.allowed()).map((page) =>
        h(
          "a",
          {
            href: page.hash,
            class: current === page.hash ? "active" : null,
            // the page already open: draw it afresh (an empty form), as a new one would be
            onclick: (event) => {
              if (location.hash !== page.hash) return;
              event.preventDefault();
              route();
            },
          },
          page.label,
        ),
      )
    : [];
  $("#nav").replaceChildren(...links);
  const who = session.me
    ? [
        h(
          "span",
          { id: "key-name", title: "the key of this tab" },
          `${session.me.name} · ${session.me.scopes.join(", ")}`,
          session.me.galleries ? ` · ${session.me.galleries.join(", ")}` : "",
        ),
        h("button", { id: "forget-key", class: "secondary", onclick: () => forgetKey() }, "Forget key"),
      ]
    : [];
  $("#who").replaceChildren(...who);
}

function forgetKey(why) {
  sessionStorage.removeItem(KEY_STORE);
  session.key = null;
  session.me = null;
  session.galleries = null;
  session.flash = why || "";
  go("#/key");
}

// Open a page; the same hash again redraws it (no hashchange event fires then).
function go(hash) {
  if (location.hash === hash) return route();
  location.hash = hash;
  return Promise.resolve();
}

function homePage() {
  return can.enroll() ? "#/galleries" : "#/identify"; // the first page this key may open
}

// The gallery names a field offers: the key's own, else those it may list, else "default".
async function galleryNames() {
  if (session.galleries) return session.galleries;
  if (session.me.galleries) {
    session.galleries = [...session.me.galleries];
  } else if (can.enroll()) {
    session.galleries = (await api("/galleries")).map((gallery) => gallery.name);
    if (!session.galleries.includes("default")) session.galleries.unshift("default");
  } else {
    session.galleries = ["default"];
  }
  return session.galleries;
}

async function galleryField(name = "gallery") {
  const names = await galleryNames();
  const wanted = decodeURIComponent(location.hash.split("?gallery=")[1] || "");
  const chosen = names.includes(wanted) ? wanted : names[0];
  if (session.me.galleries) {
    return h("select", { name, id: `f-${name}` }, names.map((g) => h("option", { selected: g === chosen }, g)));
  }
  // a key of every gallery may name a new one (enrolment creates it)
  return [
    h("input", { name, id: `f-${name}`, list: "gallery-names", value: chosen, required: true }),
    h("datalist", { id: "gallery-names" }, names.map((g) => h("option", { value: g }))),
  ];
}

// ----------------------------------------------------------------------------- pages

async function keyPage() {
  const input = h("input", {
    type: "password", name: "key", id: "api-key", autocomplete: "off", required: true,
    placeholder: "gid_...",
  });
  const submit = h("button", { type: "submit", id: "use-key" }, "Use this key");
  const form = h(
    "form",
    {
      class: "fields",
      onsubmit: (event) => {
        event.preventDefault();
        busy(submit, async () => {
          session.key = input.value.trim();
          try {
            session.me = await api("/me");
          } catch (error) {
            session.key = null;
            throw error;
          }
          sessionStorage.setItem(KEY_STORE, session.key);
          await go(homePage());
        });
      },
    },
    h("label", { for: "api-key" }, "API key"),
    input,
    h("div", { class: "wide actions" }, submit),
  );
  show(
    h(
      "div",
      { class: "card login" },
      h("h1", {}, "Sign in with an API key"),
      h(
        "p",
        { class: "muted" },
        "The key stays in this tab (sessionStorage) and is sent only to this server. ",
        "Create one with ",
        h("code", {}, "gaitid keys create --scope admin --name me"),
        ".",
      ),
      form,
    ),
  );
  input.focus();
}

async function galleriesPage() {
  const galleries = await api("/galleries");
  session.galleries = null; // re-read on the next form
  const rows = galleries.map((gallery) =>
    h(
      "tr",
      { dataset: { gallery: gallery.name } },
      h("td", {}, h("a", { href: `#/gallery/${encodeURIComponent(gallery.name)}` }, gallery.name)),
      h("td", { class: "num" }, gallery.identities),
      h("td", { class: "num" }, gallery.templates),
      h("td", { class: "num" }, gallery.default_threshold === null ? "model's" : fmt.score(gallery.default_threshold)),
      h("td", { class: "mono" }, fmt.json(gallery.metadata)),
      h(
        "td",
        {},
        can.admin()
          ? h(
              "button",
              {
                class: "danger erase-gallery",
                onclick: (event) =>
                  busy(event.currentTarget, async () => {
                    const yes = await confirmErase(
                      `Erase the gallery ${gallery.name}?`,
                      `This erases the gallery “${gallery.name}” and everyone enrolled in it: ` +
                        `${plural(gallery.identities, "identity", "identities")} and ` +
                        `${plural(gallery.templates, "template", "templates")}, from ` +
                        "the database and every replica's index. It cannot be undone.",
                    );
                    if (!yes) return;
                    await api(`/galleries/${encodeURIComponent(gallery.name)}`, { method: "DELETE" });
                    await galleriesPage();
                    notify(`Gallery ${gallery.name} erased.`, true);
                  }),
              },
              "Erase",
            )
          : null,
      ),
    ),
  );
  const table = h(
    "table",
    { id: "galleries" },
    h(
      "thead",
      {},
      h("tr", {}, h("th", {}, "Gallery"), h("th", { class: "num" }, "Identities"),
        h("th", { class: "num" }, "Templates"), h("th", { class: "num" }, "Threshold"),
        h("th", {}, "Metadata"), h("th", {}, "")),
    ),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No gallery yet."))),
  );
  show(
    h("h1", {}, "Galleries"),
    h("div", { class: "card" }, table),
    can.admin() ? createGalleryCard() : null,
  );
}

function createGalleryCard() {
  const submit = h("button", { type: "submit", id: "create-gallery" }, "Create gallery");
  const form = h(
    "form",
    {
      class: "fields",
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(event.currentTarget);
        busy(submit, async () => {
          const body = { name: data.get("name").trim() };
          if (data.get("threshold")) body.default_threshold = Number(data.get("threshold"));
          if (data.get("metadata").trim()) body.metadata = parseJson(data.get("metadata"), "metadata");
          await api("/galleries", { method: "POST", json: body });
          await galleriesPage();
          notify(`Gallery ${body.name} created.`, true);
        });
      },
    },
    h("label", { for: "g-name" }, "Name"),
    h("input", { id: "g-name", name: "name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,127}" }),
    h("label", { for: "g-threshold" }, "Default threshold"),
    h("input", { id: "g-threshold", name: "threshold", type: "number", step: "0.001", min: -1, max: 1, placeholder: "the model's" }),
    h("label", { for: "g-metadata" }, "Metadata (JSON)"),
    h("input", { id: "g-metadata", name: "metadata", placeholder: '{"site": "north"}' }),
    h("div", { class: "wide actions" }, submit),
  );
  return h("div", { class: "card", id: "create-gallery-card" }, h("h2", {}, "New gallery"), form);
}

function parseJson(text, what) {
  try {
    const value = JSON.parse(text);
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error();
    return value;
  } catch {
    throw new Error(`${what} must be a JSON object, e.g. {"site": "north"}`);
  }
}

async function galleryPage(name) {
  let items = [];
  let cursor = null;
  let pending = null;
  // the server searches (GET /identities?q=): names and metadata of the whole gallery
  const search = h("input", {
    id: "search", class: "search", type: "search", placeholder: "search name or metadata",
    oninput: () => {
      clearTimeout(pending);
      pending = setTimeout(() => reload().catch(reportError), 250);
    },
  });
  const more = h("button", { class: "secondary", id: "more", onclick: (event) => busy(event.currentTarget, load) }, "Load more");
  const tbody = h("tbody");
  const counter = h("span", { class: "muted", id: "counter" });

  async function reload() {
    items = [];
    cursor = null;
    await load();
  }

  async function load() {
    const query = new URLSearchParams({ gallery: name, limit: "100" });
    if (cursor) query.set("cursor", cursor);
    const wanted = search.value.trim();
    if (wanted) query.set("q", wanted);
    const page = await api(`/identities?${query}`);
    if (wanted !== search.value.trim()) return; // typed on meanwhile: a newer load follows
    items = items.concat(page.items);
    cursor = page.next_cursor;
    draw(wanted);
  }

  function draw(wanted) {
    tbody.replaceChildren(
      ...items.map((item) =>
        h(
          "tr",
          { dataset: { identity: item.name } },
          h("td", {}, h("a", { href: `#/identity/${item.id}` }, item.name)),
          h("td", { class: "mono" }, fmt.json(item.metadata)),
          h("td", { class: "num" }, item.templates),
          h("td", { class: "num" }, item.stale_templates),
          h("td", {}, fmt.date(item.created_at)),
        ),
      ),
    );
    if (!items.length) tbody.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No identity.")));
    counter.textContent = `${items.length}${cursor ? "+" : ""} ${wanted ? `matching “${wanted}”` : "identities"}`;
    more.hidden = !cursor;
    tbody.dataset.query = wanted; // what the rows answer (tests wait for it)
  }

  await load();
  show(
    h("h1", {}, `Gallery ${name}`),
    h(
      "div",
      { class: "card" },
      h("div", { class: "actions" }, search, counter,
        can.enroll() ? h("a", { href: `#/enrol?gallery=${encodeURIComponent(name)}` }, "Enrol into this gallery") : null),
      h(
        "table",
        { id: "identities" },
        h("thead", {}, h("tr", {}, h("th", {}, "Identity"), h("th", {}, "Metadata"),
          h("th", { class: "num" }, "Templates"), h("th", { class: "num" }, "Stale"), h("th", {}, "Enrolled"))),
        tbody,
      ),
      more,
    ),
  );
}

async function identityPage(id) {
  const identity = await api(`/identities/${id}`);
  const eraseIdentity = can.admin()
    ? h(
        "button",
        {
          class: "danger",
          id: "erase-identity",
          onclick: (event) =>
            busy(event.currentTarget, async () => {
              const count = identity.template_list.length;
              const yes = await confirmErase(
                `Erase ${identity.name}?`,
                `This erases “${identity.name}” (id ${identity.id}) of the gallery ` +
                  `${identity.gallery} with ${count === 1 ? "its only template" : `all ${count} of its templates`}, ` +
                  "from the database and " +
                  "every replica's index. It cannot be undone.",
              );
              if (!yes) return;
              await api(`/identities/${identity.id}`, { method: "DELETE" });
              session.flash = `${identity.name} erased.`;
              session.flashOk = true;
              await go(`#/gallery/${encodeURIComponent(identity.gallery)}`);
            }),
        },
        "Erase identity",
      )
    : null;
  const templates = identity.template_list.map((template) =>
    h(
      "tr",
      { dataset: { template: template.id } },
      h("td", { class: "num" }, template.id),
      h("td", {}, template.view || "–"),
      h("td", {}, template.condition || "–"),
      h("td", { class: "num" }, `${template.frames_used} / ${template.frames_total}`),
      h("td", {}, template.stale ? `stale (${template.model_version})` : template.model_version),
      h("td", {}, fmt.date(template.created_at)),
      h(
        "td",
        {},
        can.admin()
          ? h(
              "button",
              {
                class: "danger erase-template",
                onclick: (event) =>
                  busy(event.currentTarget, async () => {
                    const yes = await confirmErase(
                      `Erase template ${template.id}?`,
                      `This erases one walk of ${identity.name}: template ${template.id}` +
                        `${template.view ? `, view ${template.view}` : ""}` +
                        `${template.condition ? `, ${template.condition}` : ""}. The identity stays.`,
                    );
                    if (!yes) return;
                    await api(`/templates/${template.id}`, { method: "DELETE" });
                    await identityPage(id);
                    notify(`Template ${template.id} erased.`, true);
                  }),
              },
              "Erase",
            )
          : null,
      ),
    ),
  );
  show(
    h("h1", {}, identity.name),
    h(
      "div",
      { class: "card" },
      h(
        "dl",
        { class: "kv" },
        h("dt", {}, "Gallery"), h("dd", {}, h("a", { href: `#/gallery/${encodeURIComponent(identity.gallery)}` }, identity.gallery)),
        h("dt", {}, "Id"), h("dd", {}, identity.id),
        h("dt", {}, "Metadata"), h("dd", { class: "mono" }, fmt.json(identity.metadata) || "–"),
        h("dt", {}, "Enrolled"), h("dd", {}, fmt.date(identity.created_at)),
      ),
      h("h2", {}, "Templates"),
      h(
        "table",
        { id: "templates" },
        h("thead", {}, h("tr", {}, h("th", { class: "num" }, "Id"), h("th", {}, "View"), h("th", {}, "Condition"),
          h("th", { class: "num" }, "Frames used"), h("th", {}, "Model"), h("th", {}, "Enrolled"), h("th", {}, ""))),
        h("tbody", {}, templates),
      ),
      h("div", { class: "actions" }, eraseIdentity),
    ),
  );
}

// The upload part shared by enrol, identify and verify: file, how to read it, background,
// and for footage with several people whose walk it is (``people`` on identify only).
function uploadFields({ people = false } = {}) {
  return [
    h("label", { for: "f-file" }, "Walk"),
    h("input", { id: "f-file", name: "file", type: "file", required: true }),
    h("label", { for: "f-input" }, "Read it as"),
    h(
      "select",
      { id: "f-input", name: "input" },
      h("option", { value: "auto" }, "auto: silhouettes or footage"),
      h("option", { value: "silhouettes" }, "silhouette masks"),
      h("option", { value: "video" }, "camera footage"),
    ),
    h("label", { for: "f-background" }, "Empty scene (footage)"),
    h("input", { id: "f-background", name: "background", type: "file", accept: "image/*" }),
    people ? h("label", { for: "f-people" }, "People in the clip") : null,
    people
      ? h(
          "select",
          { id: "f-people", name: "people" },
          h("option", { value: "one" }, "one: the person chosen below, else the one seen longest"),
          h("option", { value: "all" }, "all: everyone, each on their own"),
        )
      : null,
    h("label", { for: "f-track" }, "Person (track)"),
    h("input", {
      id: "f-track", name: "track", type: "number", min: 1, max: 1000,
      placeholder: "footage with several people: their number (Preview lists them)",
    }),
  ];
}

//: The form fields of an upload, as the API names them.
const UPLOAD = ["file", "input", "background", "people", "track"];

// The multipart body of an upload form, without empty optional fields.
function formBody(form, names) {
  const data = new FormData(form);
  const body = new FormData();
  for (const name of names) {
    const value = data.get(name);
    if (value === null) continue;
    if (value instanceof File ? value.size === 0 && name !== "file" : String(value).trim() === "") continue;
    body.append(name, value instanceof File ? value : String(value).trim());
  }
  return body;
}

function inputReport(report) {
  const reasons = Object.entries(report.dropped).map(([reason, n]) => `${reason.replaceAll("_", " ")}: ${n}`);
  return h(
    "div",
    { class: "report", id: "input-report" },
    h("div", {}, h("b", {}, report.kind), "read as"),
    h("div", {}, h("b", {}, report.frames_seen), "frames seen"),
    h("div", {}, h("b", { id: "frames-used" }, report.frames_used), "frames used"),
    h("div", {}, h("b", {}, report.frames_dropped), "dropped", reasons.length ? h("div", { class: "muted" }, reasons.join(", ")) : null),
    report.people > 1 ? h("div", {}, h("b", { id: "people-seen" }, report.people), "people seen") : null,
    report.track && report.people > 1 ? h("div", {}, h("b", { id: "person" }, report.track.track), "whose walk") : null,
  );
}

// The people of a clip, each a button that chooses their walk (the track field) and previews it.
function trackPicker(form, report, onPick) {
  if (!report.tracks || report.tracks.length < 2) return null;
  return h(
    "div",
    { class: "actions", id: "tracks" },
    h("span", { class: "muted" }, "Several people in this clip; enrolment and verification need one:"),
    report.tracks.map((track) =>
      h(
        "button",
        {
          type: "button",
          class: "secondary pick-track",
          dataset: { track: track.track },
          onclick: (event) => {
            form.elements.track.value = String(track.track);
            if (form.elements.people) form.elements.people.value = "one";
            busy(event.currentTarget, onPick);
          },
        },
        `Person ${track.track} (frames ${track.first_frame}–${track.last_frame})`,
      ),
    ),
  );
}

// Another walk, another way to read it or another person: what was shown goes.
function clearOnNewWalk(form, ...shown) {
  for (const name of UPLOAD.filter((field) => form.elements[field])) {
    form.elements[name].addEventListener("change", () => shown.forEach((node) => node.replaceChildren()));
  }
}

function previewButtonFor() {
  return h("button", { type: "button", class: "secondary", id: "preview-button" }, "Preview");
}

// The Preview button reads the walk without storing it; a new walk clears what was shown.
function wirePreview(form, button, preview, result) {
  button.addEventListener("click", () => {
    if (!form.elements.file.reportValidity()) return;
    busy(button, () => previewInto(form, preview));
  });
  clearOnNewWalk(form, preview, result);
}

function thresholdFields() {
  return [
    h("label", { for: "f-threshold" }, "Threshold"),
    h("input", { id: "f-threshold", name: "threshold", type: "number", step: "0.001", min: -1, max: 1, placeholder: "gallery's or model's" }),
  ];
}

async function previewInto(form, target) {
  const result = await api("/preview", { method: "POST", form: formBody(form, UPLOAD) });
  target.replaceChildren(
    h("h2", {}, "What the model will see"),
    inputReport(result.input),
    trackPicker(form, result.input, () => previewInto(form, target)),
    h("img", {
      class: "strip", id: "strip", src: result.strip, width: result.strip_width, height: result.strip_height,
      alt: "preview strip: sampled frames, the followed person's masks and the final silhouettes",
    }),
  );
}

async function enrolPage() {
  const preview = h("div", { id: "preview" });
  const result = h("div", { id: "result" });
  const previewButton = previewButtonFor();
  const enrolButton = h("button", { type: "submit", id: "enrol-button" }, "Enrol");
  const form = h(
    "form",
    { class: "fields", id: "enrol-form" },
    ...uploadFields(),
    h("label", { for: "f-identity" }, "Identity"),
    h("input", { id: "f-identity", name: "identity", required: true, maxlength: 256 }),
    h("label", { for: "f-gallery" }, "Gallery"),
    await galleryField(),
    h("label", { for: "f-view" }, "View"),
    h("input", { id: "f-view", name: "view", placeholder: "090", maxlength: 64 }),
    h("label", { for: "f-condition" }, "Condition"),
    h("input", { id: "f-condition", name: "condition", placeholder: "nm-01", maxlength: 64 }),
    h("label", { for: "f-metadata" }, "Walk metadata (JSON)"),
    h("input", { id: "f-metadata", name: "metadata", placeholder: '{"camera": "lobby"}' }),
    h("div", { class: "wide actions" }, previewButton, enrolButton,
      h("span", { class: "muted" }, "Preview reads the walk without storing anything.")),
  );
  wirePreview(form, previewButton, preview, result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(enrolButton, async () => {
      const fields = [...UPLOAD, "identity", "gallery", "view", "condition", "metadata"];
      const body = formBody(form, fields);
      if (body.get("metadata")) parseJson(body.get("metadata"), "metadata");
      const done = await api("/enroll", { method: "POST", form: body });
      result.replaceChildren(
        h(
          "div",
          { class: "card", id: "enrolled" },
          h("h2", {}, done.created ? "Enrolled" : "Already enrolled (same upload)"),
          h(
            "p",
            {},
            h("a", { href: `#/identity/${done.identity_id}` }, done.identity),
            ` in ${done.gallery}: template ${done.template_id}`,
            done.input ? `, ${done.input.frames_used} frames used of ${done.input.frames_seen}` : "",
            ".",
          ),
        ),
      );
      notify(`${done.identity} enrolled.`, true);
    });
  });
  show(h("h1", {}, "Enrol a walk"), h("div", { class: "card" }, form, preview), result);
}

// A score bar against the threshold: scores below 0 draw empty, the threshold is a red tick.
function scoreBar(score, threshold) {
  const fill = h("div", { class: `bar-fill${score >= threshold ? " above" : ""}` });
  const tick = h("div", { class: "bar-threshold", title: `threshold ${fmt.score(threshold)}` });
  const track = h("div", { class: "bar-track" }, fill, tick);
  // CSSOM custom properties, allowed by style-src 'self' (no style attribute in markup)
  track.style.setProperty("--score", String(Math.max(0, Math.min(1, score))));
  track.style.setProperty("--threshold", String(Math.max(0, Math.min(1, threshold))));
  return track;
}

// The route (silhouettes or clip) says which of the model's calibrations applied.
function decisionBadge(match, threshold, source, route, id = "decision") {
  return h(
    "p",
    {},
    h("span", { class: `decision ${match ? "match" : "unknown"}`, id }, match ? "match" : "unknown"),
    ` threshold ${fmt.score(threshold)} (${source}; ${route} route)`,
  );
}

// Best template per identity, best first, each score drawn against the threshold.
function rankedList(matches, threshold, id) {
  if (!matches.length) return h("p", { class: "muted", id }, "No identity to compare with.");
  return h(
    "ol",
    { class: "matches", id },
    matches.map((match, i) =>
      h(
        "li",
        { dataset: { identity: match.identity } },
        h("span", { class: "rank" }, i + 1),
        can.enroll()
          ? h("a", { class: "name", href: `#/identity/${match.identity_id}` }, match.identity)
          : h("span", { class: "name" }, match.identity),
        scoreBar(match.score, threshold),
        h("span", { class: "score" }, fmt.score(match.score)),
      ),
    ),
  );
}

async function identifyPage() {
  const preview = h("div", { id: "preview" });
  const result = h("div", { id: "result" });
  const previewButton = previewButtonFor();
  const submit = h("button", { type: "submit", id: "identify-button" }, "Identify");
  const form = h(
    "form",
    { class: "fields", id: "identify-form" },
    ...uploadFields({ people: true }),
    h("label", { for: "f-gallery" }, "Gallery"),
    await galleryField(),
    h("label", { for: "f-top_k" }, "Matches"),
    h("input", { id: "f-top_k", name: "top_k", type: "number", min: 1, max: 100, value: 5 }),
    ...thresholdFields(),
    h("div", { class: "wide actions" }, previewButton, submit),
  );
  wirePreview(form, previewButton, preview, result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      const body = formBody(form, [...UPLOAD, "gallery", "top_k", "threshold"]);
      const answer = await api("/identify", { method: "POST", form: body });
      // with people=all, each person of the clip on their own; else the one walk
      const ranked = answer.people
        ? answer.people.flatMap((person) => [
            h("h3", { id: `person-${person.track}` },
              `Person ${person.track} (frames ${person.first_frame}–${person.last_frame}, ${person.frames_used} used)`),
            decisionBadge(person.decision === "match", answer.threshold, answer.threshold_source, answer.threshold_route, `decision-${person.track}`),
            rankedList(person.matches, answer.threshold, `matches-${person.track}`),
          ])
        : [
            decisionBadge(answer.decision === "match", answer.threshold, answer.threshold_source, answer.threshold_route),
            rankedList(answer.matches, answer.threshold, "matches"),
          ];
      result.replaceChildren(
        h(
          "div",
          { class: "card" },
          h("h2", {}, `Ranked matches in ${answer.gallery}`),
          ranked,
          h("p", { class: "legend" }, h("span", { class: "tick" }), " threshold; scores are cosine similarities, bars from 0 to 1."),
          h("h2", {}, "How the upload was read"),
          inputReport(answer.input),
          h("p", { class: "muted" }, `model ${answer.model_version}, ${Math.round(answer.timings.total_ms)} ms`),
        ),
      );
    });
  });
  show(h("h1", {}, "Identify a walk"), h("div", { class: "card" }, form, preview), result);
}

async function verifyPage() {
  const preview = h("div", { id: "preview" });
  const result = h("div", { id: "result" });
  const previewButton = previewButtonFor();
  const submit = h("button", { type: "submit", id: "verify-button" }, "Verify");
  const form = h(
    "form",
    { class: "fields", id: "verify-form" },
    ...uploadFields(),
    h("label", { for: "f-identity" }, "Claimed identity"),
    h("input", { id: "f-identity", name: "identity", required: true }),
    h("label", { for: "f-gallery" }, "Gallery"),
    await galleryField(),
    ...thresholdFields(),
    h("div", { class: "wide actions" }, previewButton, submit),
  );
  wirePreview(form, previewButton, preview, result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      const body = formBody(form, [...UPLOAD, "identity", "gallery", "threshold"]);
      const answer = await api("/verify", { method: "POST", form: body });
      result.replaceChildren(
        h(
          "div",
          { class: "card" },
          h("h2", {}, `Is this ${answer.identity}?`),
          decisionBadge(answer.match, answer.threshold, answer.threshold_source, answer.threshold_route),
          h("ol", { class: "matches", id: "matches" },
            h("li", { dataset: { identity: answer.identity } }, h("span", { class: "rank" }, ""),
              h("span", { class: "name" }, answer.identity), scoreBar(answer.score, answer.threshold),
              h("span", { class: "score" }, fmt.score(answer.score)))),
          h("h2", {}, "How the upload was read"),
          inputReport(answer.input),
        ),
      );
    });
  });
  show(h("h1", {}, "Verify a claimed identity"), h("div", { class: "card" }, form, preview), result);
}

async function modelPage() {
  const model = await api("/model");
  const picture = h("div", { id: "det" });
  if (model.det_picture) {
    // an <img src> cannot send the key: fetch it, show it from a blob URL (img-src blob:)
    const blob = await (await api("/model/det.png", { raw: true })).blob();
    const url = URL.createObjectURL(blob);
    picture.append(
      h("h2", {}, "Detection error trade-off (model card)"),
      h("img", { class: "det", id: "det-picture", src: url, alt: "DET curves of the model card", onload: () => URL.revokeObjectURL(url) }),
    );
  } else {
    picture.append(h("p", { class: "muted" }, "No DET picture ships with this model file."));
  }
  show(
    h("h1", {}, "Model"),
    h(
      "div",
      { class: "card" },
      h(
        "dl",
        { class: "kv", id: "model" },
        h("dt", {}, "Name"), h("dd", {}, model.name),
        h("dt", {}, "Variant"), h("dd", {}, model.variant),
        h("dt", {}, "Version"), h("dd", { id: "model-version" }, model.version),
        h("dt", {}, "sha256"), h("dd", { class: "mono" }, model.sha256),
        h("dt", {}, "Embedding"), h("dd", {}, `${model.embedding_dim} dimensions`),
        h("dt", {}, "Trained on"), h("dd", {}, model.training_data),
        h("dt", {}, "Default threshold"),
        h("dd", { id: "model-threshold" }, `${fmt.score(model.threshold)} `,
          h("span", { class: "muted" }, model.threshold_source === "model"
            ? "(calibrated, from the model file)"
            : "(GAITID_FALLBACK_THRESHOLD: the model carries none)")),
        h("dt", {}, "Camera-clip threshold"),
        h("dd", { id: "model-clip-threshold" }, model.clip_threshold === null
          ? h("span", { class: "muted" }, "none: clips use the default")
          : fmt.score(model.clip_threshold)),
      ),
      h("p", { class: "muted" }, "A gallery's default threshold, or a request's, takes precedence."),
      picture,
    ),
  );
}

async function healthPage() {
  const live = await fetch("/healthz", { credentials: "omit" });
  const ready = await fetch("/readyz", { credentials: "omit" });
  const readiness = await ready.json();
  const stats = can.enroll() ? await api("/stats") : null;
  const check = (ok) => h("span", { class: ok ? "decision match" : "decision unknown" }, ok ? "ok" : "failing");
  show(
    h("h1", {}, "Health"),
    h(
      "div",
      { class: "card" },
      h(
        "dl",
        { class: "kv", id: "health" },
        h("dt", {}, "Alive"), h("dd", {}, check(live.ok)),
        h("dt", {}, "Ready"), h("dd", { id: "ready" }, check(readiness.status === "ready"), readiness.detail ? ` ${readiness.detail}` : ""),
        h("dt", {}, "Database"), h("dd", {}, check(readiness.checks.database)),
        h("dt", {}, "Model"), h("dd", {}, check(readiness.checks.model), ` ${readiness.model_version || ""}`),
        h("dt", {}, "Index"), h("dd", {}, check(readiness.checks.index)),
      ),
    ),
    stats
      ? h(
          "div",
          { class: "card" },
          h("h2", {}, session.me.galleries ? "Your galleries" : "All galleries"),
          h(
            "dl",
            { class: "kv", id: "stats" },
            h("dt", {}, "Galleries"), h("dd", {}, stats.galleries),
            h("dt", {}, "Identities"), h("dd", {}, stats.identities),
            h("dt", {}, "Templates"), h("dd", {}, stats.templates),
            h("dt", {}, "Stale templates"), h("dd", {}, stats.stale_templates),
            h("dt", {}, "Index"), h("dd", {}, `${stats.index.kind}, ${stats.index.size} vectors`),
            h("dt", {}, "Runs on"), h("dd", {}, stats.model.providers.join(", ")),
          ),
        )
      : null,
  );
}

// ---------------------------------------------------------------------------- routing

const ROUTES = [
  [/^#\/galleries$/, can.enroll, () => galleriesPage()],
  [/^#\/gallery\/([^/?]+)$/, can.enroll, (m) => galleryPage(decodeURIComponent(m[1]))],
  [/^#\/identity\/(\d+)$/, can.enroll, (m) => identityPage(m[1])],
  [/^#\/enrol(\?.*)?$/, can.enroll, () => enrolPage()],
  [/^#\/identify(\?.*)?$/, can.identify, () => identifyPage()],
  [/^#\/verify(\?.*)?$/, can.identify, () => verifyPage()],
  [/^#\/model$/, () => true, () => modelPage()],
  [/^#\/health$/, () => true, () => healthPage()],
];

async function route() {
  delete document.body.dataset.ready; // set again once the page is drawn (tests wait for it)
  notify(session.flash || "", session.flashOk); // a message left by the page before
  session.flash = null;
  session.flashOk = false;
  if (!session.key) {
    drawHeader();
    return keyPage();
  }
  try {
    if (!session.me) session.me = await api("/me");
  } catch (error) {
    forgetKey(error.message);
    return;
  }
  drawHeader();
  for (const [pattern, allowed, page] of ROUTES) {
    const match = location.hash.match(pattern);
    if (match && allowed()) {
      document.body.dataset.page = location.hash.split(/[/?]/)[1];
      try {
        await page(match);
      } catch (error) {
        reportError(error);
      }
      document.body.dataset.ready = location.hash;
      return;
    }
  }
  await go(homePage());
}

window.addEventListener("hashchange", route);
route();
