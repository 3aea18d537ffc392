// A self-contained viewer of one archive made by `brain export tiles`, from any static file server that answers
// HTTP range requests (or from brain's GET /archives/{name}?token=…). Open index.html?archive=NAME.pmtiles
// (a path relative to this page, or a full URL). No basemap: the archive's own layers are the map.
(function () {
  "use strict";
  const params = new URLSearchParams(window.location.search);
  const url = new URL(params.get("archive") || "archive.pmtiles", window.location.href).href;
  const status = document.getElementById("status");
  const list = document.getElementById("layers");
  const palette = ["#3b6ea8", "#d62728", "#2ca02c", "#8c564b", "#9467bd", "#ff7f0e", "#17becf", "#7f7f7f"];

  const protocol = new pmtiles.Protocol();
  maplibregl.addProtocol("pmtiles", protocol.tile);
  const archive = new pmtiles.PMTiles(url);
  protocol.add(archive);

  Promise.all([archive.getHeader(), archive.getMetadata()]).then(function ([header, meta]) {
    const layers = (meta && meta.vector_layers) || [];
    const style = {
      version: 8,
      sources: {archive: {type: "vector", url: "pmtiles://" + url, attribution: meta.attribution || ""}},
      layers: [{id: "background", type: "background", paint: {"background-color": "#f4f1ea"}}],
    };
    layers.forEach(function (v, i) {
      const color = palette[i % palette.length];
      const common = {source: "archive", "source-layer": v.id};
      style.layers.push(Object.assign({id: v.id + ":fill", type: "fill", filter: ["==", ["geometry-type"], "Polygon"],
                                       paint: {"fill-color": color, "fill-opacity": 0.35}}, common));
      style.layers.push(Object.assign({id: v.id + ":line", type: "line",
                                       filter: ["in", ["geometry-type"], ["literal", ["LineString", "Polygon"]]],
                                       paint: {"line-color": color, "line-width": 1}}, common));
      style.layers.push(Object.assign({id: v.id + ":point", type: "circle", filter: ["==", ["geometry-type"], "Point"],
                                       paint: {"circle-color": color, "circle-radius": 4,
                                               "circle-stroke-color": "#fff", "circle-stroke-width": 1}}, common));
      const item = document.createElement("li");
      const swatch = document.createElement("i");
      swatch.style.background = color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(v.id + " — " + Object.keys(v.fields || {}).length + " fields"));
      list.appendChild(item);
    });
    status.textContent = (meta.name || "archive") + ", zoom " + header.minZoom + "–" + header.maxZoom;
    const map = new maplibregl.Map({
      container: "map", style: style, attributionControl: {compact: true},
      bounds: [[header.minLon, header.minLat], [header.maxLon, header.maxLat]], fitBoundsOptions: {padding: 20},
      minZoom: Math.max(0, header.minZoom - 2), maxZoom: header.maxZoom + 3,
    });
    map.addControl(new maplibregl.NavigationControl());
    map.on("click", function (e) {
      const hit = map.queryRenderedFeatures(e.point)[0];
      if (!hit) return;
      const rows = Object.entries(hit.properties).map(function ([k, v]) { return k + ": " + v; }).join("<br>");
      new maplibregl.Popup().setLngLat(e.lngLat).setHTML("<b>" + hit.sourceLayer + "</b><br>" + rows).addTo(map);
    });
    window.brainArchiveMap = map;  // for tests and the console
  }).catch(function (err) {
    status.textContent = "Cannot open " + url + ": " + err;
    status.className = "error";
  });
})();
