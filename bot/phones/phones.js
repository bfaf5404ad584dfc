// The phones page: draws the emulator's chats and sends what is typed and tapped to the bot.
// Everything shown comes from the server's snapshots (server-sent events); nothing is made up here.
"use strict";

const LABELS = JSON.parse(document.getElementById("labels").textContent);
const SETUP = JSON.parse(document.getElementById("setup").textContent);
const phones = new Map(); // chat id -> {element, handset, drawn: Map(message id -> {key, node})}

L.Icon.Default.imagePath = "static/vendor/leaflet-1.9.4/images/";

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function safeLink(href) {
  return /^(https?:|tg:)/i.test(href || "") ? href : null;
}

// Text with its entities (UTF-16 offsets, as JavaScript strings count): built as nodes, never HTML.
function formatted(text, entities, phone) {
  const fragment = document.createDocumentFragment();
  if (!entities || !entities.length) {
    fragment.append(text);
    return fragment;
  }
  const cuts = new Set([0, text.length]);
  for (const e of entities) {
    cuts.add(e.offset);
    cuts.add(e.offset + e.length);
  }
  const points = [...cuts].sort((a, b) => a - b);
  for (let i = 0; i + 1 < points.length; i++) {
    const [start, end] = [points[i], points[i + 1]];
    const piece = text.slice(start, end);
    let node = document.createTextNode(piece);
    const active = entities
      .filter((e) => e.offset <= start && e.offset + e.length >= end)
      .sort((a, b) => b.offset - a.offset || a.length - b.length);
    for (const e of active) node = wrapped(e, node, piece, phone);
    fragment.append(node);
  }
  return fragment;
}

function wrapped(entity, inner, piece, phone) {
  const tags = {
    bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code", pre: "pre",
  };
  let outer;
  if (tags[entity.type]) {
    outer = element(tags[entity.type]);
  } else if (entity.type === "text_link" || entity.type === "url") {
    const href = safeLink(entity.type === "url" ? piece : entity.url);
    outer = element(href ? "a" : "span");
    if (href) {
      outer.href = href;
      outer.target = "_blank";
      outer.rel = "noopener noreferrer";
    }
  } else if (entity.type === "bot_command") {
    outer = element("a", "command");
    outer.href = "#";
    outer.addEventListener("click", (event) => {
      event.preventDefault();
      act(phone, "text", {text: piece});
    });
  } else {
    outer = element("span", entity.type.replace(/[^a-z_]/g, ""));
  }
  outer.append(inner);
  return outer;
}

function minutes(seconds) {
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

function bubble(phone, message) {
  const own = !message.from.is_bot && message.from.id === phone.handset.user_id;
  const node = element("div", `message ${own ? "mine" : "theirs"}`);
  node.dataset.messageId = message.message_id;
  if (phone.handset.chat_id < 0 && !own) node.append(element("div", "sender", message.from.name));
  if (message.photo) {
    const picture = element("img", "photo");
    picture.src = message.photo.url;
    picture.alt = "";
    picture.addEventListener("load", () => stickToBottom(phone));
    node.append(picture);
  }
  if (message.location) {
    const map = element("div", "pin");
    map.dataset.latitude = message.location.latitude;
    map.dataset.longitude = message.location.longitude;
    node.append(map);
    node.append(element("div", "coordinates",
      `📍 ${message.location.latitude.toFixed(5)}, ${message.location.longitude.toFixed(5)}`));
  }
  if (message.voice) {
    const voice = element("a", "voice", `▶ 🎤 ${minutes(message.voice.duration)}`);
    voice.href = message.voice.url;
    voice.download = "voice.oga";
    node.append(voice);
  }
  if (message.document) {
    const file = element("a", "document", `📄 ${message.document.name}`);
    file.href = message.document.url;
    file.download = message.document.name;
    node.append(file);
  }
  if (message.contact) {
    node.append(element("div", "contact",
      `👤 ${message.contact.first_name || ""} ${message.contact.phone_number}`));
  }
  if (message.sticker !== undefined) node.append(element("div", "sticker", message.sticker));
  const text = message.text ?? message.caption;
  if (text) {
    const body = element("div", "text");
    body.append(formatted(text, message.entities || message.caption_entities, phone));
    node.append(body);
  }
  if (message.edit_date) node.append(element("small", "edited", LABELS.edited));
  if (message.buttons) {
    const keyboard = element("div", "inline");
    for (const row of message.buttons) {
      const line = element("div", "row");
      for (const button of row) {
        let key;
        if (button.url) {
          key = element("a", "button", button.text);
          const href = safeLink(button.url);
          if (href) key.href = href;
          key.target = "_blank";
          key.rel = "noopener noreferrer";
        } else {
          key = element("button", "button", button.text);
          key.type = "button";
          key.addEventListener("click", () =>
            act(phone, "tap", {message_id: message.message_id, data: button.data}));
        }
        line.append(key);
      }
      keyboard.append(line);
    }
    node.append(keyboard);
  }
  return node;
}

function drawMaps(node) {
  for (const pin of node.querySelectorAll(".pin:not(.drawn)")) {
    pin.classList.add("drawn");
    const at = [Number(pin.dataset.latitude), Number(pin.dataset.longitude)];
    const map = L.map(pin, {
      zoomControl: false, attributionControl: false, dragging: false, scrollWheelZoom: false,
      doubleClickZoom: false, boxZoom: false, keyboard: false, touchZoom: false,
    }).setView(at, 15);
    L.marker(at).addTo(map);
  }
}

// A chat read to its end stays at its end as pictures load and messages come.
function stickToBottom(phone) {
  const chat = phone.element.querySelector(".chat");
  if (!phone.atBottom) return;
  chat.scrollTop = chat.scrollHeight;
}

function draw(snapshot) {
  const phone = phones.get(snapshot.chat_id);
  if (!phone) return;
  const chat = phone.element.querySelector(".chat");
  const present = new Set();
  let previous = null;
  for (const message of snapshot.messages) {
    const key = JSON.stringify(message);
    present.add(message.message_id);
    let drawn = phone.drawn.get(message.message_id);
    if (!drawn || drawn.key !== key) { // new, or edited: drawn again in its place
      const node = bubble(phone, message);
      if (drawn) drawn.node.replaceWith(node);
      drawn = {key, node};
      phone.drawn.set(message.message_id, drawn);
    }
    if (drawn.node.previousElementSibling !== previous || !drawn.node.isConnected) {
      if (previous) previous.after(drawn.node);
      else chat.prepend(drawn.node);
      drawMaps(drawn.node);
    }
    previous = drawn.node;
  }
  for (const [id, drawn] of phone.drawn) { // deleted by the bot
    if (!present.has(id)) {
      drawn.node.remove();
      phone.drawn.delete(id);
    }
  }
  chat.querySelector(".empty").hidden = snapshot.messages.length > 0;
  stickToBottom(phone);
  drawKeyboard(phone, snapshot.keyboard);
  drawCommands(phone, snapshot.commands);
}

function drawKeyboard(phone, markup) {
  const keyboard = phone.element.querySelector(".keyboard");
  keyboard.replaceChildren();
  for (const row of (markup && markup.keyboard) || []) {
    const line = element("div", "row");
    for (const button of row) {
      const label = typeof button === "string" ? button : button.text;
      const key = element("button", "button", label);
      key.type = "button";
      key.addEventListener("click", () => {
        if (button.request_location) openPicker(phone);
        else act(phone, "press", {label});
      });
      line.append(key);
    }
    keyboard.append(line);
  }
}

function drawCommands(phone, commands) {
  const list = phone.element.querySelector(".commands");
  list.replaceChildren();
  for (const command of commands) {
    const item = element("li");
    const key = element("button", "", "");
    key.type = "button";
    key.append(element("b", "", `/${command.command}`), " ", command.description);
    key.addEventListener("click", () => {
      list.hidden = true;
      act(phone, "text", {text: `/${command.command}`});
    });
    item.append(key);
    list.append(item);
  }
  phone.element.querySelector(".menu-button").hidden = commands.length === 0;
}

function toast(phone, text) {
  const note = phone.element.querySelector(".toast");
  note.textContent = text;
  note.hidden = false;
  clearTimeout(phone.toastTimer);
  phone.toastTimer = setTimeout(() => { note.hidden = true; }, 3000);
}

function alertBox(text) {
  const box = document.getElementById("alert");
  box.querySelector("p").textContent = text;
  box.hidden = false;
  box.querySelector("button").focus();
}

document.querySelector("#alert button").addEventListener("click", () => {
  document.getElementById("alert").hidden = true;
});

async function act(phone, action, body) {
  const options = {method: "POST"};
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = {"Content-Type": "application/json"};
  }
  let answer;
  try {
    const response = await fetch(`chats/${phone.handset.chat_id}/${action}`, options);
    answer = await response.json();
  } catch (error) {
    answer = {ok: false, error: String(error)};
  }
  if (!answer.ok) toast(phone, LABELS.failed.replace("{reason}", answer.error));
  else if (answer.answer && answer.answer.text) {
    if (answer.answer.alert) alertBox(answer.answer.text);
    else toast(phone, answer.answer.text);
  }
}

function openPicker(phone) {
  const picker = phone.element.querySelector(".picker");
  picker.hidden = false;
  phone.element.querySelector(".attachments").hidden = true;
  const [latitude, longitude] = ["latitude", "longitude"].map(
    (name) => picker.querySelector(`input[name=${name}]`));
  const at = () => [Number(latitude.value), Number(longitude.value)];
  if (!phone.picker) {
    const map = L.map(picker.querySelector(".picker-map"), {
      zoomControl: false, attributionControl: false,
    }).setView(at(), 14);
    const marker = L.marker(at(), {draggable: true}).addTo(map);
    const moved = (place) => {
      latitude.value = place.lat.toFixed(5);
      longitude.value = place.lng.toFixed(5);
      marker.setLatLng(place);
    };
    map.on("click", (event) => moved(event.latlng));
    marker.on("dragend", () => moved(marker.getLatLng()));
    for (const input of [latitude, longitude]) {
      input.addEventListener("change", () => marker.setLatLng(at()));
    }
    phone.picker = map;
  }
  phone.picker.invalidateSize();
}

function addPhone(handset) {
  if (phones.has(handset.chat_id)) return phones.get(handset.chat_id);
  const element = document.getElementById("phone").content.firstElementChild.cloneNode(true);
  element.dataset.chat = handset.chat_id;
  element.dataset.role = handset.role;
  element.querySelector(".name").textContent = handset.name;
  element.querySelector(".role").textContent = handset.role_label;
  const phone = {element, handset, drawn: new Map(), atBottom: true};
  const chat = element.querySelector(".chat");
  // Only the reader's own scrolling (wheel, touch, the scrollbar) unsticks the chat's end.
  for (const kind of ["wheel", "touchmove", "pointerdown", "keydown"]) {
    chat.addEventListener(kind, () => { phone.reading = Date.now(); }, {passive: true});
  }
  chat.addEventListener("scroll", () => {
    if (Date.now() - (phone.reading || 0) > 1000) return;
    phone.atBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 40;
  });
  phones.set(handset.chat_id, phone);
  document.getElementById("phones").append(element);

  const form = element.querySelector(".compose");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = form.elements.text.value.trim();
    if (!text) return;
    form.elements.text.value = "";
    act(phone, "text", {text});
  });
  const attachments = element.querySelector(".attachments");
  const commands = element.querySelector(".commands");
  element.querySelector(".attach").addEventListener("click", () => {
    attachments.hidden = !attachments.hidden;
    commands.hidden = true;
  });
  element.querySelector(".menu-button").addEventListener("click", () => {
    commands.hidden = !commands.hidden;
    attachments.hidden = true;
  });
  attachments.addEventListener("click", (event) => {
    const chosen = event.target.closest("button[data-attach]");
    if (!chosen) return;
    const kind = chosen.dataset.attach;
    if (kind === "location") return openPicker(phone);
    attachments.hidden = true;
    act(phone, kind === "sample-photo" ? "photo" : kind);
  });
  for (const input of attachments.querySelectorAll("input[type=file]")) {
    input.addEventListener("change", () => {
      if (!input.files.length) return;
      const body = new FormData();
      body.append("file", input.files[0]);
      attachments.hidden = true;
      act(phone, input.dataset.attach === "document" ? "document" : "photo", body);
      input.value = "";
    });
  }
  const picker = element.querySelector(".picker");
  picker.querySelector(".cancel").addEventListener("click", () => { picker.hidden = true; });
  picker.querySelector(".send-location").addEventListener("click", () => {
    picker.hidden = true;
    act(phone, "location", {
      latitude: Number(picker.querySelector("input[name=latitude]").value),
      longitude: Number(picker.querySelector("input[name=longitude]").value),
    });
  });
  return phone;
}

for (const handset of SETUP.phones) addPhone(handset);

document.getElementById("new-villager").addEventListener("click", async () => {
  const response = await fetch(`phones?lang=${SETUP.language}`, {method: "POST"});
  const phone = addPhone(await response.json());
  phone.element.scrollIntoView({behavior: "smooth", inline: "center"});
  phone.element.querySelector("input[name=text]").focus();
});

const events = new EventSource(`events?lang=${SETUP.language}`);
events.addEventListener("phone", (event) => addPhone(JSON.parse(event.data)));
events.addEventListener("chat", (event) => draw(JSON.parse(event.data)));
