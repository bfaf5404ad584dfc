/* Draws the pins the page embeds (#map-data) on #map with Leaflet: on the tiles of
   WEB_TILES when it names a server, else on a plain background; clustered when asked. */
(function () {
  "use strict";
  var element = document.getElementById("map");
  var source = document.getElementById("map-data");
  if (!element || !source || !window.L) { return; }
  var data = JSON.parse(source.textContent);
  // maxZoom on the map itself: without a tile layer nothing else gives the cluster layer one.
  var map = L.map(element, { attributionControl: Boolean(data.attribution), maxZoom: 19 });
  if (data.tiles) {
    L.tileLayer(data.tiles, { maxZoom: 19, attribution: data.attribution }).addTo(map);
  }
  var layer = data.cluster && L.markerClusterGroup
    ? L.markerClusterGroup({ maxClusterRadius: 40 })
    : L.featureGroup();
  var points = [];
  data.pins.forEach(function (pin) {
    var marker = L.circleMarker([pin.lat, pin.lng], {
      radius: 8, color: "#ffffff", weight: 2, fillColor: pin.colour, fillOpacity: 0.9
    });
    var box = document.createElement("div");
    var link = document.createElement("a");
    link.href = pin.url;
    link.textContent = pin.number;
    box.appendChild(link);
    box.appendChild(document.createElement("br"));
    box.appendChild(document.createTextNode(pin.status + " · " + pin.category));
    marker.bindPopup(box);
    layer.addLayer(marker);
    points.push([pin.lat, pin.lng]);
  });
  // The view first: the cluster layer asks the map's zoom as it is added.
  if (points.length === 1) {
    map.setView(points[0], 16);
  } else if (points.length > 1) {
    map.fitBounds(L.latLngBounds(points), { padding: [24, 24], maxZoom: 16 });
  } else {
    map.setView([0, 0], 2);
  }
  layer.addTo(map);
}());
