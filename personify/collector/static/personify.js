/* Personify browser snippet: page views to the Personify collector, no build step.
 *
 *   <script src="https://collect.example.com/personify.js" data-write-key="WEB_WRITE_KEY"></script>
 *
 * Keeps an anonymous id in a first-party cookie (personify_aid, 2 years, SameSite=Lax) and sends
 * a page_view/1 event (url, referrer, event_id, ts) to the collector the script was loaded from
 * (or data-collector="https://..."), with navigator.sendBeacon, else fetch(keepalive). The
 * write key travels in the body, since sendBeacon cannot set headers: give the browser source
 * a key that may send page views and signups only (docs/collector.md).
 * data-auto="false" turns the automatic page view off; window.personify.page() sends one.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.personify) { return; }
  var writeKey = script.getAttribute("data-write-key") || "";
  var collector = (script.getAttribute("data-collector") || new URL(script.src).origin)
    .replace(/\/+$/, "");
  var COOKIE = "personify_aid";
  var TWO_YEARS_S = 63072000;

  function uuid() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); });
    return h.slice(0, 4).join("") + "-" + h.slice(4, 6).join("") + "-" + h.slice(6, 8).join("") +
      "-" + h.slice(8, 10).join("") + "-" + h.slice(10).join("");
  }

  function anonymousId() {
    var found = document.cookie.match(/(?:^|;\s*)personify_aid=([^;]+)/);
    var id = found ? decodeURIComponent(found[1]) : uuid();
    document.cookie = COOKIE + "=" + encodeURIComponent(id) + "; Max-Age=" + TWO_YEARS_S +
      "; Path=/; SameSite=Lax" + (location.protocol === "https:" ? "; Secure" : "");
    return id;
  }

  function send(event) {
    var url = collector + "/v1/batch";
    var body = JSON.stringify({ writeKey: writeKey, batch: [event] });
    if (navigator.sendBeacon && navigator.sendBeacon(url, body)) { return; }
    if (window.fetch) {
      fetch(url, { method: "POST", body: body, keepalive: true, credentials: "omit",
                   headers: { "Content-Type": "text/plain" } }).catch(function () {});
    }
  }

  function page() {
    var event = {
      schema: "page_view/1",
      event_id: uuid(),
      ts: new Date().toISOString(),
      anonymous_id: anonymousId(),
      url: location.href,
      referrer: document.referrer || null
    };
    send(event);
    return event.event_id;
  }

  window.personify = { page: page, anonymousId: anonymousId };
  if (script.getAttribute("data-auto") !== "false") { page(); }
})();
