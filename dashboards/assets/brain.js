// The map side of the dashboards: our /tiles vector tiles drawn by MapLibre GL JS (vendored), map clicks and
// drawn areas into Dash (set_props), fitting, flying, the time window, themes and the 2.5D view.
// Permission is the server's: tiles come from /tiles with the session cookie, already filtered to the user;
// what a click opens is read again on the server, in the user's scope.
(function () {
  var brain = window.brain = window.brain || {};
  brain.map = null;
  brain.state = {layers: [], current: null, theme: null, time: null, mode: '2d', heat: false, view: null};
  brain.tilesLoaded = 0;
  brain.painted = false;  // the map's first paint is done (holdFirstPaint)
  brain.firstPaintWithin = brain.firstPaintWithin || 2000;  // ms the first paint waits for the view's tiles

  // -- start: the map is created when Dash has rendered #map and handed us the page's configuration --------
  // The vendored files' addresses carry their content's hash (the page lists them, and preloads MapLibre and
  // its stylesheet): the browser keeps them from one page load to the next
  function vendor(f) {
    var el = document.getElementById('brain-vendor');
    return (el && JSON.parse(el.textContent)[f]) || '/assets/vendor/' + f;
  }
  function loadVendor() {
    if (window.maplibregl || document.getElementById('maplibre-js')) { return; }
    var s = document.createElement('script');
    s.id = 'maplibre-js';
    s.src = vendor('maplibre-gl.js');
    s.onload = function () {
      // start the tile workers while Dash is still fetching the page's layout
      if (maplibregl.prewarm) { maplibregl.prewarm(); }
      brain.configure(brain.conf);
    };
    document.head.appendChild(s);
  }
  loadVendor();

  brain.configure = function (conf) {
    if (!conf) { return ''; }
    brain.conf = conf;
    var el = document.getElementById('map');
    if (!window.maplibregl || !el || brain.map) { return ''; }
    if (conf.protomaps && !(window.pmtiles && window.basemaps)) {  // BRAIN_BASEMAP_PMTILES: its two readers
      ['pmtiles.js', 'protomaps-basemaps.js'].forEach(function (f) {
        if (document.querySelector('script[data-brain="' + f + '"]')) { return; }
        var s = document.createElement('script');
        s.src = vendor(f);
        s.setAttribute('data-brain', f);
        s.onload = function () { brain.configure(brain.conf); };
        document.head.appendChild(s);
      });
      return '';
    }
    if (conf.protomaps && !brain.protocol) {
      brain.protocol = new pmtiles.Protocol();
      maplibregl.addProtocol('pmtiles', brain.protocol.tile);
    }
    var v = conf.view || {};
    if (conf.state) { Object.assign(brain.state, conf.state); }  // the page's first state: drawn from the start
    var map = new maplibregl.Map({
      container: el,
      // the whole style at once, in the state the page opens in: its tiles are asked for as the map starts, and
      // nothing changes after the first tiles (a layer shown or filtered later makes its source load again)
      style: buildStyle(conf, brain.state),
      // no `glyphs`: every label is drawn with a local font (MapLibre ≥ 5.11), nothing leaves the machine
      localIdeographFontFamily: conf.font,
      // the first camera is the address's view, else the user's unit fitted (so no tile is fetched twice)
      center: v.center || conf.root.center, zoom: v.zoom || 12, bearing: v.bearing || 0, pitch: v.pitch || 0,
      bounds: v.center ? undefined : box((brain.state.view && brain.state.view.bbox) || conf.root.bbox),
      fitBoundsOptions: {padding: 20, maxZoom: 17},
      minZoom: 8, maxZoom: 19.5, maxPitch: 60, maxBounds: conf.bounds,
      attributionControl: false, locale: conf.ui.locale, fadeDuration: 0,
      canvasContextAttributes: {preserveDrawingBuffer: true}  // so that the map prints and screenshots
    });
    brain.map = map;
    holdFirstPaint(map, brain.firstPaintWithin);
    noSky(map);
    brain.firstBounds = v.center ? null : box((brain.state.view && brain.state.view.bbox) || conf.root.bbox);
    brain.marks = {created: performance.now()};  // for the benchmark: when the map was made, loaded, idle
    map.once('load', function () { brain.marks.loaded = performance.now(); });
    map.once('idle', function () { brain.marks.idle = performance.now(); });
    map.addControl(new maplibregl.NavigationControl({visualizePitch: true}), 'top-right');
    map.addControl(new maplibregl.ScaleControl({unit: 'metric'}), 'bottom-left');
    map.addControl(new ModeControl(), 'top-right');
    map.addControl(new DrawControl(), 'top-left');
    map.on('load', function () {
      brain.interactive = map.getStyle().layers.filter(function (l) {  // what a click or hover may hit, top first
        return l.metadata && l.metadata.pick;
      }).map(function (l) { return l.id; }).reverse();
      brain.ready = true;
      restoreShapes();
      var want = brain.state.view && brain.state.view.bbox;  // a unit asked for after the map was made
      if (!v.center && want && JSON.stringify(box(want)) !== JSON.stringify(brain.firstBounds)) {
        fitBox(want, false);
      }
      apply();
    });
    map.on('error', function (e) {  // a request the map cancelled itself (it moved on) is not an error
      var err = e.error || {};
      if (err.name === 'AbortError' || /abort/i.test(String(err.message))) { return; }
      console.error('map: ' + (err.status ? err.status + ' ' : '') + (err.message || err) + (err.url ? ' ' + err.url : ''));
    });
    map.on('click', onClick);
    map.on('mousemove', onHover);
    map.on('mouseout', function () { brain.popup && brain.popup.remove(); });
    map.on('moveend', writeUrl);
    map.on('data', function (e) {
      if (e.tile && e.dataType === 'source') {
        brain.tilesLoaded += 1;
        brain.marks['tile:' + e.sourceId] = performance.now();  // the last tile of each source
      }
    });
    return '';
  };

  // The opening view is drawn once, complete. MapLibre draws a frame each time a tile arrives; without a GPU
  // (SwiftShader, a virtual desktop) each partial frame costs about as much as a whole one, and takes the processor
  // from the worker still parsing the rest (interleaved runs of bench/dashboard.py: 0.1-0.2 s sooner with this).
  // MapLibre has no option for it, so its painter (an internal) is held after the map's first (empty) frame until
  // the style, every tile of the view and their labels' places are in, or until `ms` have passed (a slow source
  // does not leave the map empty); then MapLibre draws as it always does. The first frame is drawn: MapLibre 5.24
  // sets up its drawing there, and a map held from its first frame stayed blank (tests/test_dashboards.py checks
  // the canvas after each paint).
  function holdFirstPaint(map, ms) {
    var painter = map.painter, render = painter && painter.render;
    if (typeof render !== 'function') {  // another MapLibre: it draws as the tiles come
      brain.painted = true;
      return;
    }
    var until = performance.now() + ms, first = true;
    painter.render = function () {
      if (first) {
        first = false;
        return render.apply(painter, arguments);
      }
      // called by the map's render after its sources and labels are updated for this frame. In the frame the
      // last tiles arrive, MapLibre places their labels, marks that placement stale and draws again in the next
      // frame (`_placementDirty`): the first paint is that next frame's, so the view is drawn once, not twice
      var ready = map.style && map.style.loaded() && !map._placementDirty;
      if (!ready && performance.now() < until) { return undefined; }  // held: nothing drawn in this frame
      painter.render = render;
      render.apply(painter, arguments);
      brain.painted = true;
      return undefined;
    };
    setTimeout(function () {  // draws then, even if no tile arrives to ask for a frame
      if (painter.render !== render) { map.triggerRepaint(); }
    }, ms);
  }

  // MapLibre 5.24 draws the sky in every frame, even when the style has none (it then draws a default sky that
  // shows nowhere below the horizon, and our maxPitch keeps the horizon off the screen: the same pixels at pitch
  // 60). Under SwiftShader that pass costs 30-35 ms of the GPU process per frame, and its program is compiled in
  // the map's first frame. So the sky is drawn only when the style has one. `drawFunctions` is a MapLibre
  // internal: replaced for this map only, and if it is missing, the map draws as it always does.
  function noSky(map) {
    var painter = map.painter, draw = painter && painter.drawFunctions;
    if (!draw || typeof draw.sky !== 'function') { return; }
    var sky = draw.sky;
    painter.drawFunctions = Object.assign({}, draw, {sky: function () {
      if (map.getSky()) { return sky.apply(this, arguments); }
      return undefined;
    }});
  }

  // -- the style, built from the catalog the server sent (only the layers this user gets) ---------------------
  var OVERLAY_LAYERS = {drawn: ['drawn-fill', 'drawn-line'], sketch: ['sketch-line'],
                        selected: ['selected-fill', 'selected-point']};
  var POINT_ORDER = ['water', 'roads', 'people', 'organisations', 'party', 'devices', 'events'];
  // The layers under everything come in one tile per address (/tiles/units,water,roads,buildings/…): a quarter
  // of the requests, one parse, and one set of stencil masks a frame for all their clipped layers
  var BASE = ['units', 'water', 'roads', 'buildings'];
  var MASK_FAR = 13, MASK_NEAR = 16;  // the zooms of the dimming's tiles (buildStyle)
  function sourceOf(id) { return brain.base && brain.base.indexOf(id) >= 0 ? 'base' : id; }
  brain.interactive = [];  // style layer ids a click or hover may hit, top first

  function colorBy(st, fallback) {
    if (!st.by || !st.colors) { return st.color || fallback; }
    var m = ['match', ['to-string', ['get', st.by]]];
    Object.keys(st.colors).forEach(function (k) { m.push(k, st.colors[k]); });
    m.push(st.color || fallback);
    return m;
  }

  // Our lines share one shader program, and our fills another: a colour per feature and a width per feature and
  // zoom. MapLibre compiles a program for each mix of constant, per-feature and per-zoom properties at its first
  // use; under SwiftShader each costs about 25 ms of the first frame, and the opening view needed 15 of them
  // (bench/dashboard.py). A constant written as a per-feature expression draws the same picture.
  function each(v) { return ['case', ['has', 'brain:each'], v, v]; }
  function zoomed(w) { return ['interpolate', ['linear'], ['zoom'], 0, w, 24, w]; }

  function styleLayers(spec) {
    var st = spec.style || {}, out = [];
    spec.parts.forEach(function (part) {
      var base = {source: sourceOf(spec.id), 'source-layer': part.name, metadata: {brain: spec.id, part: part.name}};
      var id = spec.id + '-' + part.name;
      var feat = ['has', 'id'];
      if (spec.id === 'units') {
        if (part.name === 'unit_labels') { return; }  // the names' points: the unit-label layers, drawn last
        out.push(Object.assign({id: id + '-fill', type: 'fill', paint: {'fill-color': '#000', 'fill-opacity': 0}},
                               base, {metadata: {brain: 'units', part: part.name, pick: 'unit'}}));
        out.push(Object.assign({id: id + '-line', type: 'line', paint: {
          'line-color': each(st.color || '#3b6ea8'), 'line-opacity': 0.9,
          'line-width': zoomed(['match', ['get', 'level'], 'district', 3, 'street', 2.5, 'community', 1.6, 0.8])}},
                               base));
        return;
      }
      if (part.aggregate.length) {  // per-grid counts below the detail zoom: drawn only as the chosen theme
        out.push(Object.assign({id: id + '-agg', type: 'fill', filter: ['has', 'code'],
                                layout: {visibility: 'none'},
                                paint: {'fill-color': '#ccc', 'fill-opacity': 0.72, 'fill-outline-color': each('#fff')}},
                               base, {metadata: {brain: spec.id, part: part.name, pick: 'grid', theme: true}}));
      }
      if (st.kind === 'road') {  // a casing under the road, its class's colour and width, the name along it
        var width = ['match', ['get', 'class']];
        Object.keys(st.width || {}).forEach(function (k) { width.push(k, st.width[k]); });
        width.push(2);
        var scaled = ['interpolate', ['exponential', 1.6], ['zoom'], 12, ['*', 0.35, width], 17, ['*', 1.6, width]];
        var casing = ['interpolate', ['exponential', 1.6], ['zoom'], 12, ['+', 1, ['*', 0.35, width]],
                      17, ['+', 2, ['*', 1.6, width]]];
        out.push(Object.assign({id: id + '-casing', type: 'line', filter: feat, layout: {'line-cap': 'round'},
                                paint: {'line-color': each('#c3c8ce'), 'line-width': casing}}, base));
        out.push(Object.assign({id: id + '-line', type: 'line', filter: feat, layout: {'line-cap': 'round'},
                                paint: {'line-color': colorBy(st, '#fff'), 'line-width': scaled}}, base));
        out.push(Object.assign({id: id + '-label', type: 'symbol', filter: feat, minzoom: 14, layout: {
          'symbol-placement': 'line', 'text-field': ['get', 'name'], 'text-size': 12,
          'text-font': [brain.conf.fontName]},
          paint: {'text-color': '#555', 'text-halo-color': '#fff', 'text-halo-width': 1.5}}, base));
        return;
      }
      if (st.kind === 'water') {  // reaches as polygons, 河涌 as lines, patrol routes as double lines
        // a reach's edge is a line of its colour (the lines' program) instead of the fill's antialiased outline,
        // a program of its own
        var polygon = ['all', feat, ['==', ['geometry-type'], 'Polygon']];
        out.push(Object.assign({id: id + '-fill', type: 'fill', filter: polygon,
                                paint: {'fill-color': colorBy(st, '#9ccbf0'), 'fill-opacity': 0.9,
                                        'fill-antialias': false}}, base));
        out.push(Object.assign({id: id + '-edge', type: 'line', filter: polygon,
                                paint: {'line-color': colorBy(st, '#9ccbf0'), 'line-opacity': 0.9,
                                        'line-width': zoomed(each(1))}}, base));
        out.push(Object.assign({id: id + '-line', type: 'line',
                                filter: ['all', feat, ['==', ['geometry-type'], 'LineString'],
                                         ['!=', ['get', 'kind'], 'patrol_route']],
                                paint: {'line-color': colorBy(st, '#7fb8e6'),
                                        'line-width': ['interpolate', ['linear'], ['zoom'], 12, each(1.5), 17, each(6)]}},
                               base));
        // a patrol route is a double line in its colour: a dashed line would be a program of its own (lineSDF)
        out.push(Object.assign({id: id + '-patrol', type: 'line',
                                filter: ['all', feat, ['==', ['get', 'kind'], 'patrol_route']],
                                paint: {'line-color': each(st.colors.patrol_route), 'line-width': zoomed(each(1)),
                                        'line-gap-width': 2}}, base));
        out.push(Object.assign({id: id + '-label', type: 'symbol', filter: ['all', feat,
                                ['!=', ['get', 'kind'], 'patrol_route']], minzoom: 13, layout: {
          'symbol-placement': 'line', 'text-field': ['get', 'name'], 'text-size': 12,
          'text-font': [brain.conf.fontName], 'symbol-spacing': 400},
          paint: {'text-color': '#2f6fa6', 'text-halo-color': '#fff', 'text-halo-width': 1.5}}, base));
        return;
      }
      if (part.geometry === 'polygon') {
        out.push(Object.assign({id: id + '-fill', type: 'fill', filter: feat, minzoom: spec.detail_zoom,
                                paint: {'fill-color': colorBy(st, '#9e9e9e'), 'fill-opacity': 0.8,
                                        'fill-outline-color': each('#6d6d6d')}},
                               base, {metadata: {brain: spec.id, part: part.name, pick: 'feature', flat: true}}));
        if (spec.id === 'buildings') {
          out.push(Object.assign({id: id + '-3d', type: 'fill-extrusion', filter: feat, minzoom: 15,
                                  layout: {visibility: 'none'},
                                  paint: {'fill-extrusion-color': colorBy(st, '#9e9e9e'),
                                          'fill-extrusion-height': ['*', 3, ['coalesce', ['get', 'floors'], 1]],
                                          'fill-extrusion-opacity': 0.9}},
                                 base, {metadata: {brain: spec.id, part: part.name, pick: 'feature', solid: true}}));
          out.push(Object.assign({id: id + '-label', type: 'symbol', filter: feat, minzoom: 17, layout: {
            'text-field': ['coalesce', ['get', 'name'], ['get', 'address'], ''], 'text-size': 11,
            'text-font': [brain.conf.fontName], 'text-max-width': 8},
            paint: {'text-color': '#3a3a3a', 'text-halo-color': '#fff', 'text-halo-width': 1.2}}, base));
        }
      } else if (part.geometry === 'line') {
        out.push(Object.assign({id: id + '-line', type: 'line', filter: feat, minzoom: part.minzoom,
                                paint: {'line-color': each(st.line_color || st.color || '#c00000'),
                                        'line-width': zoomed(each(1)), 'line-opacity': 0.6}}, base));
      } else {
        var ring = st.ring ? ['case', ['==', ['get', st.ring], true], 2.5, 1] : each(1);
        out.push(Object.assign({id: id + '-dot', type: 'circle', filter: feat, minzoom: spec.detail_zoom,
                                paint: {'circle-color': colorBy(st, '#3388ff'), 'circle-radius':
                                          ['interpolate', ['linear'], ['zoom'], 12, 3, 16, 5, 19, 8],
                                        'circle-stroke-color': st.ring ? ['case', ['==', ['get', st.ring], true],
                                                                          '#111', '#fff'] : each('#fff'),
                                        'circle-stroke-width': ring}},
                               base, {metadata: {brain: spec.id, part: part.name, pick: 'feature'}}));
        out.push(Object.assign({id: id + '-heat', type: 'heatmap', filter: feat, minzoom: spec.detail_zoom,
                                layout: {visibility: 'none'},
                                paint: {'heatmap-radius': ['interpolate', ['linear'], ['zoom'], 13, 12, 18, 30],
                                        'heatmap-opacity': 0.8}},
                               base, {metadata: {brain: spec.id, part: part.name, heat: true}}));
      }
    });
    return out;
  }

  function buildStyle(conf, state) {
    var origin = window.location.origin, sources = {}, layers = [];
    // no background layer: the map's box has the colour (brain.css), under a canvas cleared to transparent; a
    // background layer is a program to compile and a pass over the whole canvas in every frame under SwiftShader
    if (conf.protomaps) {  // a Protomaps basemap archive the bureau extracted for its area, read by range requests
      sources.protomaps = {type: 'vector', url: 'pmtiles://' + origin + conf.protomaps};
      basemaps.layers('protomaps', basemaps.namedFlavor('light'), {lang: conf.lang}).forEach(function (l) {
        if (l.id !== 'background') { layers.push(l); }
      });
    }
    if (conf.basemap) {  // BRAIN_BASEMAP_URL: an optional raster basemap under our own layers
      sources.basemap = {type: 'raster', tiles: [conf.basemap], tileSize: 256};
      layers.push({id: 'basemap', type: 'raster', source: 'basemap'});
    }
    // the world outside the user's unit, dimmed: vector tiles asked for with the others as the map starts (a GeoJSON
    // source is first loaded into the worker, and its tiles come in a second round after the map's first ones).
    // Up to z16 they come from z13 at most, scaled (a community's opening view needs one tile instead of eight);
    // their edge is then placed within about a metre, half a pixel at z16. From z16 on, each zoom has its own.
    var outside = [origin + '/outside/{z}/{x}/{y}.mvt'];
    sources.mask = {type: 'vector', tiles: outside, minzoom: 8, maxzoom: MASK_FAR};
    sources['mask-near'] = {type: 'vector', tiles: outside, minzoom: MASK_NEAR, maxzoom: 18};
    var drawn = drawnData(state);
    brain.drawnShown = JSON.stringify(drawn.geometry || null);
    if (drawn.geometry) { sources.drawn = {type: 'geojson', data: drawn}; }  // the others come with their data
    var specs = conf.catalog.slice().sort(function (a, b) {
      return order(a.id) - order(b.id);
    });
    var base = specs.filter(function (spec) { return BASE.indexOf(spec.id) >= 0; });
    brain.base = base.map(function (spec) { return spec.id; });
    [{id: 'base', members: base}].concat(specs.filter(function (spec) { return BASE.indexOf(spec.id) < 0; }).map(
      function (spec) { return {id: spec.id, members: [spec]}; })).forEach(function (src) {
      if (!src.members.length) { return; }
      var ids = src.members.map(function (spec) { return spec.id; }).join(',');
      sources[src.id] = {type: 'vector', tiles: [origin + '/tiles/' + ids + '/{z}/{x}/{y}.mvt'],
                         minzoom: Math.min.apply(null, src.members.map(function (spec) { return spec.minzoom; })),
                         maxzoom: Math.max.apply(null, src.members.map(function (spec) { return spec.maxzoom; }))};
      // what a source holds for this user lies in the user's unit (brain/scope.py; shapes are clipped to it, roads
      // and rivers cut per grid), so no tile beyond the unit's box is asked for (half a community worker's opening
      // tiles were empty without this). The box is rounded to 1e-6°: widened by as much
      var b = conf.root.bbox;
      sources[src.id].bounds = [b[0] - 1e-6, b[1] - 1e-6, b[2] + 1e-6, b[3] + 1e-6];
    });
    var all = [];
    specs.forEach(function (spec) { all = all.concat(styleLayers(spec)); });
    // Bottom to top: themes, water and roads, flat features, extrusions, lines; the mask dimming what lies outside
    // the user's unit; unit outlines, the selected unit and the drawn area; points; labels. Each source's layers
    // are kept together where the picture allows: under SwiftShader every change of source between two clipped
    // layers redraws the tiles' stencil masks over the whole canvas, and empty overlays are hidden for the same
    // reason (bench/dashboard.py).
    var rank = function (l) {
      if (l.metadata.theme) { return 0; }
      var id = l.metadata.brain;
      if (id === 'water' || id === 'roads') { return l.type === 'symbol' ? 8 : 1; }
      if (id === 'units') { return 5; }  // the fill is only for picking (opacity 0: never drawn)
      return {fill: 2, 'fill-extrusion': 3, line: 4, heatmap: 4, circle: 6, symbol: 9}[l.type];
    };
    var overlays = {
      // the dimming has no antialiased edge: the unit's own outline is drawn on it
      4.5: ['mask', 'mask-near'].map(function (id) {
        return {id: id, type: 'fill', source: id, 'source-layer': 'outside',
                minzoom: id === 'mask' ? 0 : MASK_NEAR, maxzoom: id === 'mask' ? MASK_NEAR : 24,
                paint: {'fill-color': each('#1d2733'), 'fill-opacity': 0.35, 'fill-antialias': false}};
      }),
      5.5: [{id: 'selected-unit', type: 'line', source: sourceOf('units'), 'source-layer': 'units',
             filter: selectedFilter(state),
             paint: {'line-color': each('#ff8c00'), 'line-width': zoomed(each(3.5))}},
            {id: 'drawn-fill', type: 'fill', source: 'drawn',
             paint: {'fill-color': each('#b3541e'), 'fill-opacity': 0.12}},
            {id: 'drawn-line', type: 'line', source: 'drawn',
             paint: {'line-color': each('#b3541e'), 'line-width': zoomed(each(2))}},
            {id: 'sketch-line', type: 'line', source: 'sketch',
             paint: {'line-color': '#b3541e', 'line-width': 2, 'line-dasharray': [2, 1]}}],
      7: [{id: 'selected-fill', type: 'line', source: 'selected', filter: ['!=', ['geometry-type'], 'Point'],
           paint: {'line-color': each('#00b7ff'), 'line-width': zoomed(each(3))}},
          {id: 'selected-point', type: 'circle', source: 'selected', filter: ['==', ['geometry-type'], 'Point'],
           paint: {'circle-radius': 11, 'circle-color': each('rgba(0,0,0,0)'), 'circle-stroke-color': each('#00b7ff'),
                   'circle-stroke-width': each(3)}}]
    };
    Object.keys(overlays).forEach(function (r) {
      overlays[r].forEach(function (l) { l.metadata = {overlay: true, rank: parseFloat(r)}; all.push(l); });
    });
    var at = function (l) { return l.metadata.overlay ? l.metadata.rank : rank(l); };
    all.sort(function (a, b) { return at(a) - at(b); }).forEach(function (l) { layers.push(l); });
    // unit names: streets when zoomed out, communities, then grids (one label per unit, at a point inside it,
    // from the units' tiles: the server sends each level's points at these zooms only)
    var named = conf.catalog.some(function (spec) { return spec.id === 'units'; });
    [['street', 10, 13.5, 15], ['community', 12, 15.5, 14], ['grid', 14, 19.5, 12]].forEach(function (r) {
      if (!named) { return; }
      layers.push({id: 'unit-label-' + r[0], type: 'symbol', source: sourceOf('units'), 'source-layer': 'unit_labels',
                   minzoom: r[1], maxzoom: r[2], filter: ['==', ['get', 'level'], r[0]],
                   layout: {'text-field': ['get', 'name'], 'text-size': r[3], 'text-font': [conf.fontName],
                            'text-allow-overlap': false},
                   paint: {'text-color': '#12324f', 'text-halo-color': '#fff', 'text-halo-width': 1.6}});
    });
    // The overlays (drawn area, sketch, selected feature) are added with their first data: an empty GeoJSON
    // source still tiles, and each of its tiles is a frame (a full SwiftShader draw) while the page loads.
    brain.order = layers.map(function (l) { return l.id; });
    brain.lazy = {};
    layers = layers.filter(function (l) {
      if (OVERLAY_LAYERS[l.source] && !sources[l.source]) { brain.lazy[l.id] = l; return false; }
      return true;
    });
    layers.forEach(function (l) {  // each of our layers as the state shows it
      var want = shown(l, state);
      if (!want) { return; }
      l.layout = Object.assign({}, l.layout, {visibility: want.visibility});
      if (want.filter) { l.filter = want.filter; }
      if (want.color) { l.paint = Object.assign({}, l.paint, {'fill-color': want.color}); }
    });
    // no paint transitions: a change is drawn at once, in one frame (each frame of a fade costs a whole frame under
    // SwiftShader, and the opening view waited for one more after its first complete paint)
    return {version: 8, sources: sources, layers: layers, transition: {duration: 0, delay: 0}};
  }

  function order(id) { var k = POINT_ORDER.indexOf(id); return k < 0 ? -1 : k; }
  function empty() { return {type: 'FeatureCollection', features: []}; }

  // -- what Dash tells the map ------------------------------------------------------------------------------------
  // How one of our layers shows a state: {visibility, filter (events: the time window), color (the theme)}, or
  // null for a layer that is not ours. Used to build the style and to change it (MapLibre skips equal values).
  function shown(l, s) {
    var md = l.metadata;
    if (!md || !md.brain) { return null; }
    var on = s.layers.indexOf(md.brain) >= 0;
    if (md.theme) {
      on = !!(s.theme && s.theme.layer === md.brain && s.theme.part === md.part);
    } else if (md.heat) {
      on = on && s.heat;
    } else if (l.type === 'circle') {
      on = on && !s.heat;
    } else if (md.solid) {
      on = on && s.mode === '3d';
    } else if (md.flat) {
      on = on && s.mode !== '3d';
    }
    var out = {visibility: on ? 'visible' : 'none'};
    if (md.brain === 'events' && l.type !== 'fill') {
      out.filter = ['all', ['has', 'id']];
      if (s.time && s.time.since) { out.filter.push(['>=', ['get', 'reported_at'], s.time.since]); }
      if (s.time && s.time.until) { out.filter.push(['<', ['get', 'reported_at'], s.time.until]); }
    }
    if (md.theme && s.theme && l.id === s.theme.layer + '-' + s.theme.part + '-agg') {
      var step = ['step', ['coalesce', ['get', s.theme.indicator], -1], '#e6e6e6'];
      var lower = [-0.5].concat(s.theme.breaks);
      s.theme.colors.forEach(function (c, k) { step.push(lower[k], c); });
      out.color = step;
    }
    return out;
  }

  function selectedFilter(s) {
    var cur = s.current || {};
    return ['==', ['get', 'code'], cur.kind === 'unit' ? cur.code : ''];
  }

  function drawnData(s) {
    var cur = s.current || {};
    return cur.kind === 'area' ? {type: 'Feature', properties: {}, geometry: cur.geometry} : empty();
  }

  function apply() {
    if (!brain.ready) { return; }
    var map = brain.map, s = brain.state;
    // only what differs: the map draws a frame for every change asked, even of a value it already has
    var same = function (a, b) { return JSON.stringify(a) === JSON.stringify(b); };
    map.getStyle().layers.forEach(function (l) {
      var want = shown(l, s);
      if (!want) { return; }
      if ((l.layout || {}).visibility !== want.visibility) {
        map.setLayoutProperty(l.id, 'visibility', want.visibility);
      }
      if (want.filter && !same(l.filter, want.filter)) { map.setFilter(l.id, want.filter); }
      if (want.color && !same((l.paint || {})['fill-color'], want.color)) {
        map.setPaintProperty(l.id, 'fill-color', want.color);
      }
    });
    if (!same(map.getFilter('selected-unit'), selectedFilter(s))) { map.setFilter('selected-unit', selectedFilter(s)); }
    var drawn = drawnData(s), shape = JSON.stringify(drawn.geometry || null);
    if (shape !== brain.drawnShown) {  // each setData re-tiles it in the worker
      brain.drawnShown = shape;
      overlay('drawn', drawn);
    }
    writeUrl();
  }

  brain.sync = function (layers) { brain.state.layers = layers || []; apply(); return ''; };
  brain.setCurrent = function (current) { brain.state.current = current; apply(); return ''; };
  brain.setTheme = function (theme) { brain.state.theme = theme && theme.indicator ? theme : null; apply(); return ''; };
  brain.setTime = function (win) { brain.state.time = win; apply(); return ''; };
  brain.setHeat = function (heat) { brain.state.heat = !!(heat && heat.length); apply(); return ''; };

  brain.setMode = function (mode) {
    brain.state.mode = mode === '3d' ? '3d' : '2d';
    var btn = document.querySelector('.brain-mode');
    if (btn) {
      btn.textContent = brain.state.mode === '3d' ? '2D' : '2.5D';
      btn.title = brain.conf.ui[brain.state.mode === '3d' ? 'to2d' : 'to3d'];
    }
    var m = brain.map;
    if (m && brain.state.mode === '3d' && m.getPitch() < 30) {
      m.easeTo({pitch: 55, bearing: -20, zoom: Math.max(m.getZoom(), 16), duration: 0});
    } else if (m && brain.state.mode === '2d' && (m.getPitch() || m.getBearing())) {
      m.easeTo({pitch: 0, bearing: 0, duration: 0});
    }
    apply();
    return '';
  };

  function box(b) { return [[b[0], b[1]], [b[2], b[3]]]; }

  function fitBox(b, animate) {
    var map = brain.map;
    if (!b || !map) { return; }
    var el = map.getContainer(), canvas = map.getCanvas();  // resized since it was measured (layout, media queries)?
    if (el.clientWidth !== canvas.clientWidth || el.clientHeight !== canvas.clientHeight) { map.resize(); }
    var opts = {padding: 20, animate: !!animate, maxZoom: 17};
    var cam = map.cameraForBounds([[b[0], b[1]], [b[2], b[3]]], opts), c = map.getCenter();
    if (cam && Math.abs(cam.zoom - map.getZoom()) < 1e-9 && Math.abs(cam.center.lng - c.lng) < 1e-9 &&
        Math.abs(cam.center.lat - c.lat) < 1e-9 && !map.getBearing() && !map.getPitch()) {
      return;  // already there: moving would only draw the same frame again
    }
    map.fitBounds([[b[0], b[1]], [b[2], b[3]]], opts);
  }

  brain.fit = function (view) {
    brain.state.view = view;
    if (!view || !view.bbox) { return ''; }
    if (!brain.map || !brain.ready) { return ''; }
    if (view.keep) { return ''; }  // the view came from the page's address: it is where the map already is
    fitBox(view.bbox, false);
    return '';
  };

  brain.goto = function (cbctx) {
    var trig = cbctx && cbctx.triggered_id;
    // new buttons appearing also trigger the callback (n_clicks empty): only a real click flies
    var clicked = cbctx && cbctx.triggered && cbctx.triggered.length && cbctx.triggered[0].value;
    if (!trig || !clicked || !brain.map) { return ''; }
    var at = String(trig.at).split(',').map(parseFloat);
    brain.map.jumpTo({center: at, zoom: 18});
    mark({type: 'Point', coordinates: at});
    return '';
  };

  // the selected feature (or the place jumped to) marked on the map
  function mark(geometry) {
    brain.selected = geometry;
    overlay('selected', {type: 'Feature', properties: {}, geometry: geometry});
  }

  // An overlay's data, its layers shown only while it has some (an empty layer still costs a frame its stencil)
  function overlay(source, data) {
    var map = brain.map;
    var on = data.type === 'Feature' ? !!data.geometry : data.features.length > 0;
    if (!map.getSource(source)) {  // its first data: the source, and its layers where the style's order puts them
      if (!on) { return; }
      map.addSource(source, {type: 'geojson', data: data});
      OVERLAY_LAYERS[source].forEach(function (id) {
        var after = brain.order.slice(brain.order.indexOf(id) + 1).find(function (n) { return map.getLayer(n); });
        map.addLayer(brain.lazy[id], after);
      });
      return;
    }
    map.getSource(source).setData(data);
    OVERLAY_LAYERS[source].forEach(function (id) { map.setLayoutProperty(id, 'visibility', on ? 'visible' : 'none'); });
  }

  // Whether the map has drawn every tile of its current view (tests and the benchmark wait on it).
  brain.idle = function () {
    var m = brain.map;
    return !!(m && brain.ready && brain.painted && m.loaded() && m.areTilesLoaded() && !m.isMoving());
  };

  // -- clicks and hover: the rendered feature under the mouse, top layer first ---------------------------------
  function hit(point) {
    // nothing is picked while an area is drawn, nor by the click that ends a rectangle
    if (!brain.ready || drawing.mode || performance.now() - drawing.ended < 400) { return null; }
    var box = [[point.x - 4, point.y - 4], [point.x + 4, point.y + 4]];
    var feats = brain.map.queryRenderedFeatures(box, {layers: brain.interactive});
    // the top feature; a unit (its fill lies over the flat features, with its outline) only where there is none
    return feats.find(function (f) { return f.layer.metadata.pick !== 'unit'; }) || feats[0] || null;
  }

  function onClick(e) {
    var f = hit(e.point);
    if (!f) { return; }
    var md = f.layer.metadata || {};
    var p = f.properties || {};
    var out = {layer: md.brain, part: md.part, kind: md.pick, lon: e.lngLat.lng, lat: e.lngLat.lat,
               zoom: brain.map.getZoom(), at: Date.now()};
    if (md.pick === 'feature') { out.id = String(p.id); } else { out.code = String(p.code); }
    if (md.pick === 'feature') { mark(f.geometry); }
    window.dash_clientside.set_props('clicked', {data: out});
  }

  function label(vocab, code) {
    var t = (brain.conf.labels || {})[vocab] || {};
    return code === undefined || code === null ? '' : (t[String(code)] || String(code));
  }

  function tip(f) {
    var p = f.properties || {}, md = f.layer.metadata || {}, ui = brain.conf.ui;
    if (md.pick === 'unit' || md.pick === 'grid') {
      var th = brain.state.theme;
      var extra = md.pick === 'grid' && th && p[th.indicator] !== undefined ? ' · ' + th.label + ' ' +
        brain.number(p[th.indicator], th.ratio) : '';
      return p.name + extra;
    }
    switch (md.brain) {
      case 'events': return [label('event_class', p['class']), label('event_type', p.type),
                              label('event_status', p.status), brain.when(p.reported_at)].filter(Boolean).join(' · ');
      case 'devices': return [p.name, label('device_kind', p.kind), label('device_status', p.status)]
        .filter(Boolean).join(' · ');
      case 'organisations': case 'party': return [p.name, label('org_kind', p.kind)].filter(Boolean).join(' · ');
      case 'people': return [p.name || ui.person, label('residence', p.residence)].filter(Boolean).join(' · ');
      case 'buildings': return [p.address, p.floors ? p.floors + ui.floors : '', label('building_use', p.use)]
        .filter(Boolean).join(' · ');
    }
    return p.name || '';
  }

  function onHover(e) {
    if (drawing.mode) { return; }
    var f = hit(e.point);
    brain.map.getCanvas().style.cursor = f ? 'pointer' : '';
    if (!f) { if (brain.popup) { brain.popup.remove(); } return; }
    if (!brain.popup) { brain.popup = new maplibregl.Popup({closeButton: false, closeOnClick: false, offset: 10,
                                                            className: 'brain-tip'}); }
    brain.popup.setLngLat(e.lngLat).setText(tip(f)).addTo(brain.map);
  }

  // -- numbers and dates in the page's language ------------------------------------------------------------
  brain.number = function (v, ratio) {
    if (v === null || v === undefined) { return '—'; }
    var loc = brain.conf.lang === 'en' ? 'en-GB' : 'zh-CN';
    return ratio ? (v * 100).toLocaleString(loc, {maximumFractionDigits: 1}) + '%' : v.toLocaleString(loc);
  };
  brain.when = function (iso) {
    if (!iso) { return ''; }
    var d = new Date(String(iso).replace(' ', 'T'));
    if (isNaN(d)) { return String(iso); }
    return d.toLocaleString(brain.conf.lang === 'en' ? 'en-GB' : 'zh-CN',
                            {year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit'});
  };

  // -- 2D / 2.5D --------------------------------------------------------------------------------------------
  function ModeControl() {}
  ModeControl.prototype.onAdd = function () {
    var div = document.createElement('div');
    div.className = 'maplibregl-ctrl maplibregl-ctrl-group';
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'brain-mode';
    b.textContent = '2.5D';
    b.title = brain.conf.ui.to3d;
    b.onclick = function () {
      var next = brain.state.mode === '3d' ? '2d' : '3d';
      brain.setMode(next);
      window.dash_clientside.set_props('mode', {data: next});
    };
    div.appendChild(b);
    return div;
  };
  ModeControl.prototype.onRemove = function () {};

  // -- drawing areas: a rectangle (drag) or a polygon (click the corners, double-click to finish) -------------
  // Written here rather than taken from mapbox-gl-draw or terra-draw: we need two shapes and a clear button
  // whose titles are in the page's language; those libraries carry their own English UI and modes.
  var drawing = {mode: null, shapes: [], pts: [], start: null, ended: 0};

  function DrawControl() {}
  DrawControl.prototype.onAdd = function (map) {
    var div = document.createElement('div');
    div.className = 'maplibregl-ctrl maplibregl-ctrl-group brain-draw';
    [['rect', '▭', brain.conf.ui.draw_rect], ['poly', '⬠', brain.conf.ui.draw_poly],
     ['clear', '✕', brain.conf.ui.draw_clear]].forEach(function (b) {
      var btn = document.createElement('button');
      btn.type = 'button';
      btn.className = 'brain-draw-' + b[0];
      btn.textContent = b[1];
      btn.title = b[2];
      btn.setAttribute('aria-label', b[2]);
      btn.onclick = function () { b[0] === 'clear' ? clearShapes() : startDrawing(b[0]); };
      div.appendChild(btn);
    });
    map.on('mousedown', drawDown);
    map.on('mousemove', drawMove);
    map.on('mouseup', drawUp);
    map.on('click', drawClick);
    map.on('dblclick', drawFinish);
    return div;
  };
  DrawControl.prototype.onRemove = function () {};

  function startDrawing(mode) {
    drawing.mode = mode;
    drawing.pts = [];
    drawing.start = null;
    brain.map.getCanvas().style.cursor = 'crosshair';
    brain.map.doubleClickZoom.disable();
    if (brain.popup) { brain.popup.remove(); }
    document.querySelectorAll('.brain-draw button').forEach(function (b) {
      b.classList.toggle('active', b.className.indexOf('brain-draw-' + mode) === 0);
    });
  }

  function stopDrawing() {
    drawing.mode = null;
    drawing.ended = performance.now();
    brain.map.dragPan.enable();
    brain.map.getCanvas().style.cursor = '';
    overlay('sketch', empty());
    setTimeout(function () { brain.map.doubleClickZoom.enable(); }, 0);
    document.querySelectorAll('.brain-draw button').forEach(function (b) { b.classList.remove('active'); });
  }

  function sketch(coords, closed) {
    var ring = coords.slice();
    if (closed && ring.length) { ring.push(ring[0]); }
    overlay('sketch', ring.length > 1 ? {type: 'Feature', properties: {},
      geometry: {type: 'LineString', coordinates: ring}} : empty());
  }

  function ll(e) { return [e.lngLat.lng, e.lngLat.lat]; }

  function drawDown(e) {
    if (drawing.mode !== 'rect') { return; }
    e.preventDefault();
    brain.map.dragPan.disable();
    drawing.start = ll(e);
  }

  function rectOf(a, b) { return [a, [b[0], a[1]], b, [a[0], b[1]]]; }

  function drawMove(e) {
    if (drawing.mode === 'rect' && drawing.start) { sketch(rectOf(drawing.start, ll(e)), true); }
    if (drawing.mode === 'poly' && drawing.pts.length) { sketch(drawing.pts.concat([ll(e)]), true); }
  }

  function drawUp(e) {
    if (drawing.mode !== 'rect' || !drawing.start) { return; }
    var a = drawing.start, b = ll(e);
    drawing.start = null;
    stopDrawing();
    if (Math.abs(a[0] - b[0]) < 1e-6 || Math.abs(a[1] - b[1]) < 1e-6) { return; }
    addShape(rectOf(a, b));
  }

  function drawClick(e) {
    if (drawing.mode !== 'poly') { return; }
    drawing.pts.push(ll(e));
    sketch(drawing.pts, false);
  }

  function drawFinish(e) {
    if (drawing.mode !== 'poly') { return; }
    e.preventDefault();
    // a double-click has also added its point twice through `click`
    var pts = drawing.pts.filter(function (p, k, all) {
      return k === 0 || p[0] !== all[k - 1][0] || p[1] !== all[k - 1][1];
    });
    stopDrawing();
    if (pts.length >= 3) { addShape(pts); }
  }

  function addShape(ring) {
    drawing.shapes.push({type: 'Polygon', coordinates: [ring.concat([ring[0]])]});
    send();
  }

  function clearShapes() {
    if (drawing.mode) { stopDrawing(); }
    drawing.shapes = [];
    send();
  }

  function restoreShapes() {
    if (new URLSearchParams(window.location.search).get('area') !== '1') { return; }
    try {
      var saved = JSON.parse(sessionStorage.getItem('brain.drawn') || '[]');
      if (Array.isArray(saved) && saved.length) { drawing.shapes = saved; send(); }
    } catch (e) { /* nothing kept */ }
  }

  function send() {
    // every shape drawn so far: the server takes their union as the area
    window.dash_clientside.set_props('drawn', {data: {shapes: drawing.shapes.slice(), at: Date.now()}});
  }
  brain.drawnShapes = function () { return drawing.shapes.slice(); };

  // -- the view in the address, so that a link reopens it (for another user, only within their scope) ---------
  function writeUrl() {
    var m = brain.map, s = brain.state;
    if (!m || !brain.ready) { return; }
    var c = m.getCenter();
    var q = new URLSearchParams();
    if (s.current && s.current.kind === 'unit') { q.set('unit', s.current.code); }
    q.set('c', c.lng.toFixed(5) + ',' + c.lat.toFixed(5));
    q.set('z', m.getZoom().toFixed(2));
    if (m.getPitch()) { q.set('p', m.getPitch().toFixed(0)); }
    if (m.getBearing()) { q.set('b', m.getBearing().toFixed(0)); }
    q.set('layers', s.layers.join(','));
    if (s.time && s.time.preset) { q.set('t', s.time.preset); }
    if (s.theme) { q.set('theme', s.theme.layer + ':' + s.theme.indicator); }
    if (s.mode === '3d') { q.set('mode', '3d'); }
    if (s.heat) { q.set('heat', '1'); }
    if (drawing.shapes.length) {  // the drawn areas stay in this tab (a language switch keeps them), not in links
      q.set('area', '1');
      try { sessionStorage.setItem('brain.drawn', JSON.stringify(drawing.shapes)); } catch (e) { /* private mode */ }
    }
    var url = '/?' + q.toString();
    history.replaceState(null, '', url);
    ['zh', 'en'].forEach(function (lg) {  // switching language keeps the view
      var a = document.getElementById('lang-' + lg);
      if (a) { a.href = '/lang/' + lg + '?next=' + encodeURIComponent(url); }
    });
  }
  brain.url = function () { writeUrl(); return window.location.pathname + window.location.search; };

  // -- a widget as a PNG: a chart as drawn on the page (its bars and texts), numbers and lists as text ----------
  function download(canvas, name) {
    var a = document.createElement('a');
    a.download = name + '.png';
    a.href = canvas.toDataURL('image/png');
    a.click();
  }

  // The chart (an SVG image, dashboards/charts.py) at twice its size on the page, under the widget's name: the
  // SVG is given the size it is shown at (its shapes are placed in percentages of it) and drawn as a vector.
  function chartPng(chart, name) {
    var w = chart.clientWidth, h = chart.clientHeight, k = 2, head = 44;
    var bytes = Uint8Array.from(atob(chart.src.split(',')[1]), function (ch) { return ch.charCodeAt(0); });
    var svg = new TextDecoder().decode(bytes).replace('<svg ', '<svg width="' + w + '" height="' + h + '" ');
    var url = URL.createObjectURL(new Blob([svg], {type: 'image/svg+xml'}));
    var img = new Image();
    img.onload = function () {
      var c = document.createElement('canvas'), g = c.getContext('2d');
      c.width = w * k + 32;
      c.height = h * k + head + 16;
      g.fillStyle = '#fff';
      g.fillRect(0, 0, c.width, c.height);
      g.fillStyle = '#12324f';
      g.font = 'bold 24px ' + brain.conf.font;
      g.textBaseline = 'middle';
      g.fillText(name, 16, head / 2);
      g.drawImage(img, 16, head, w * k, h * k);
      URL.revokeObjectURL(url);
      download(c, name);
    };
    img.src = url;
  }

  // The grid's layout when it is not the one the page keeps, else nothing: the grid sends its layout as it
  // mounts and after each layout it is given, and those would each be a request with nothing to do. The server
  // (`edit_page` in dashboards/app.py) checks what reaches it again; a malformed layout goes there, to be refused.
  brain.gridMoved = function (layout, page) {
    if (!Array.isArray(layout) || !page || !Array.isArray(page.layout) || !Array.isArray(page.widgets)) {
      return layout;
    }
    var place = function (it) { return {i: it.i, x: it.x, y: it.y, w: it.w, h: it.h}; };
    var keep = {};
    page.widgets.forEach(function (w) { keep[w.i] = true; });
    var items = layout.filter(function (it) { return it && keep[it.i]; }).map(place);
    if (!items.every(function (it) {
      return ['x', 'y', 'w', 'h'].every(function (k) { return Number.isInteger(it[k]) && it[k] >= 0 && it[k] <= 1000; });
    })) {
      return layout;
    }
    var shown = {};
    items.forEach(function (it) { shown[it.i] = true; });
    var mounting = Object.keys(shown).length !== Object.keys(keep).length;  // not every card is in the grid yet
    if (mounting || JSON.stringify(items) === JSON.stringify(page.layout.map(place))) {
      return window.dash_clientside.no_update;
    }
    return layout;
  };

  brain.widgetPng = function (cbctx) {
    var trig = cbctx && cbctx.triggered_id;
    var clicked = cbctx && cbctx.triggered && cbctx.triggered.length && cbctx.triggered[0].value;
    if (!trig || !clicked) { return ''; }
    var card = document.getElementById(trig.i);
    if (!card) { return ''; }
    var name = card.querySelector('[data-name]').getAttribute('data-name');
    var chart = card.querySelector('img.chart');
    if (chart) {
      chartPng(chart, name);
      return '';
    }
    var rows = [];  // lines: each number with its label, or each list item
    card.querySelectorAll('.wbody .kpi').forEach(function (k) {
      rows.push(k.querySelector('.kv').textContent + '  ' + k.querySelector('.kl').textContent);
    });
    card.querySelectorAll('.wbody li, .wbody p').forEach(function (li) { rows.push(li.textContent); });
    var c = document.createElement('canvas'), g = c.getContext('2d'), font = brain.conf.font;
    c.width = 900;
    c.height = 70 + 34 * rows.length;
    g.fillStyle = '#fff';
    g.fillRect(0, 0, c.width, c.height);
    g.fillStyle = '#12324f';
    g.font = 'bold 26px ' + font;
    g.fillText(name, 24, 42);
    g.font = '20px ' + font;
    g.fillStyle = '#1d2733';
    rows.forEach(function (r, k) { g.fillText(r, 24, 84 + 34 * k); });
    download(c, name);
    return '';
  };
})();
