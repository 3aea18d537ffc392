// The map side of the dashboards: vector tiles of the catalog on the dash-leaflet map (Leaflet.VectorGrid),
// map clicks into Dash (set_props), fitting and flying to places. Permission is the server's: tiles come
// from /tiles with the session cookie, already filtered to the signed-in user.
(function () {
  var brain = window.brain = window.brain || {map: null, layers: {}, pending: {}, catalog: [], visible: []};
  brain.tilesLoaded = 0;
  brain.tilesRequested = 0;

  function start() {
    if (!window.L || !window.L.Map) { return setTimeout(start, 10); }
    if (brain.started) { return; }
    brain.started = true;
    // Leaflet.VectorGrid 1.3.0 calls L.DomEvent.fakeStop, which Leaflet 1.9 removed.
    if (!L.DomEvent.fakeStop) { L.DomEvent.fakeStop = function () { return true; }; }
    L.Map.addInitHook(function () {
      var map = this;
      map.whenReady(function () {
        // react-leaflet creates the map before its container has its size: measure, then fit and draw
        setTimeout(function () {
          map.invalidateSize();
          brain.map = map;
          // while an area is drawn, our clickable tiles must not take the mouse from the drawing tool
          map.on('draw:drawstart', function () { brain.setInteractive(false); });
          map.on('draw:drawstop', function () { setTimeout(function () { brain.setInteractive(true); }, 0); });
          // What was clicked is decided by the server, in the user's scope (a building, else the unit):
          // stacked canvas tile layers cannot tell which of them holds the feature under the mouse.
          map.on('click', function (e) {
            if (L.DomUtil.hasClass(map.getContainer(), 'brain-drawing')) { return; }
            window.dash_clientside.set_props('clicked', {data: {lon: e.latlng.lng, lat: e.latlng.lat,
                                                                zoom: map.getZoom(), at: Date.now()}});
          });
          if (brain.pendingView) { brain.fit(brain.pendingView); }
          brain.sync(brain.catalog, brain.visible);
        }, 0);
      });
    });
    var s = document.createElement('script');
    s.src = '/assets/vendor/Leaflet.VectorGrid.bundled.min.js';
    s.onload = function () { brain.ready = true; brain.sync(brain.catalog, brain.visible); };
    document.head.appendChild(s);
  }
  start();

  function shade(v) { return Math.min(0.75, 0.12 + Math.log10(1 + (v || 0)) / 5); }

  function styler(spec) {
    var st = spec.style || {};
    var aggBy = st.aggregate_by || ((spec.parts[0] || {}).aggregate || [])[0];
    return function (p, zoom) {
      var color = st.color || '#3388ff';
      if (p.id === undefined && p.code !== undefined && spec.id !== 'units') {  // counts per grid
        return {fill: true, fillColor: color, fillOpacity: shade(p[aggBy]), weight: 0.6, color: color, opacity: 0.6};
      }
      if (st.by && st.colors && p[st.by] !== undefined && st.colors[String(p[st.by])]) {
        color = st.colors[String(p[st.by])];
      }
      if (spec.id === 'units') {
        return {weight: (st.width || {})[p.level] || 1, color: color, fill: true, fillOpacity: 0.01, opacity: 0.9};
      }
      if (st.kind === 'fill') {
        return {fill: true, fillColor: color, fillOpacity: 0.7, weight: 0.5, color: '#555'};
      }
      if (st.ring && p[st.ring]) {  // overdue events: a dark ring around the status colour
        return {radius: 5, fill: true, fillColor: color, fillOpacity: 0.9, color: '#111', weight: 2.5};
      }
      return {radius: 4, fill: true, fillColor: color, fillOpacity: 0.85, color: st.line_color || '#fff',
              weight: 1};
    };
  }

  var Z = {units: 460, party: 455, events: 450, devices: 445, organisations: 440, people: 435, buildings: 420};

  brain.sync = function (catalog, visible) {
    brain.catalog = catalog || [];
    brain.visible = visible || [];
    var map = brain.map;
    if (!map || !brain.ready) { return ''; }
    Object.keys(brain.layers).forEach(function (id) {
      if (brain.visible.indexOf(id) < 0) { map.removeLayer(brain.layers[id]); delete brain.layers[id]; }
    });
    brain.catalog.forEach(function (spec) {
      if (brain.visible.indexOf(spec.id) < 0 || brain.layers[spec.id]) { return; }
      var pane = 'brain-' + spec.id;
      if (!map.getPane(pane)) { map.createPane(pane).style.zIndex = Z[spec.id] || 430; }
      var styles = {};
      spec.parts.forEach(function (part) { styles[part.name] = styler(spec); });
      var layer = L.vectorGrid.protobuf('/tiles/' + spec.id + '/{z}/{x}/{y}.mvt', {
        rendererFactory: L.canvas.tile, vectorTileLayerStyles: styles, interactive: false, pane: pane,
        minZoom: spec.minzoom, maxNativeZoom: spec.maxzoom, maxZoom: 20,
        fetchOptions: {credentials: 'same-origin'},
        getFeatureId: function (f) { return f.properties.id || f.properties.code; }
      });
      brain.pending[spec.id] = true;
      layer.on('loading', function () { brain.pending[spec.id] = true; });
      layer.on('load', function () { brain.pending[spec.id] = false; brain.lastLoad = performance.now(); });
      layer.on('tileload', function () { brain.tilesLoaded += 1; });
      layer.on('tileloadstart', function () { brain.tilesRequested += 1; });
      layer.addTo(map);
      brain.layers[spec.id] = layer;
    });
    return '';
  };

  brain.setInteractive = function (on) {
    L.DomUtil[on ? 'removeClass' : 'addClass'](brain.map.getContainer(), 'brain-drawing');
  };

  // Whether every visible layer has loaded the tiles of the current view (tests and the benchmark wait on it).
  brain.idle = function () {
    return !!brain.map && brain.ready && brain.visible.every(function (id) {
      return brain.layers[id] && !brain.pending[id];
    });
  };

  brain.fit = function (view) {
    if (!view || !view.bbox) { return ''; }
    if (!brain.map) { brain.pendingView = view; return ''; }
    var b = view.bbox;
    brain.map.fitBounds([[b[1], b[0]], [b[3], b[2]]], {padding: [10, 10]});
    return '';
  };

  brain.goto = function (cbctx) {
    var trig = cbctx && cbctx.triggered_id;
    // new buttons appearing also trigger the callback (n_clicks empty): only a real click flies
    var clicked = cbctx && cbctx.triggered && cbctx.triggered.length && cbctx.triggered[0].value;
    if (!trig || !clicked || !brain.map) { return ''; }
    var at = String(trig.at).split(',');
    brain.map.flyTo([parseFloat(at[1]), parseFloat(at[0])], 18);
    return '';
  };
})();
