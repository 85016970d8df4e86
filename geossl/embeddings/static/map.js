// geossl map: draws the layers of DATA (written by geossl/embeddings/webmap.py) with Leaflet.
// Plain ES5, no module system: the page inlines Leaflet, then DATA, then this file.
(function () {
  var map = L.map('map', { preferCanvas: false, zoomSnap: 0.25 });
  var overlays = {}, all = null;
  function grow(b) { all = all ? all.extend(b) : L.latLngBounds(b.getSouthWest(), b.getNorthEast()); }
  DATA.images.forEach(function (im) {
    var layer = L.imageOverlay(im.url, im.bounds, { opacity: 1.0 }).addTo(map);
    overlays[im.name] = layer; grow(L.latLngBounds(im.bounds));
  });
  function colour(s) {
    var t = Math.max(0, Math.min(1, (s - DATA.score_min) / Math.max(1e-9, 1 - DATA.score_min)));
    return 'hsl(' + Math.round(60 - 60 * t) + ', 100%, 50%)';
  }
  DATA.vectors.forEach(function (v) {
    var hits = v.name.indexOf('search hits') === 0;
    var layer = L.geoJSON(v.geojson, {
      style: function (f) {
        if (!hits) return { color: '#2b6cb0', weight: 1, fillOpacity: 0.05 };
        return { color: f.properties.rank === 1 ? '#ff0000' : colour(f.properties.score),
                  weight: f.properties.rank === 1 ? 3 : 2, fillOpacity: 0.15 };
      },
      onEachFeature: function (f, l) {
        var p = f.properties, div = document.createElement('div');
        div.className = 'geossl-pop';
        var title = document.createElement('b');
        title.textContent = hits ? ('#' + p.rank + '  score ' + p.score.toFixed(4)) : p.chip_id;
        div.appendChild(title);
        if (hits) {
          var id = document.createElement('div'); id.textContent = p.chip_id; div.appendChild(id);
          if (p.timestamp) { var t = document.createElement('div'); t.textContent = p.timestamp; div.appendChild(t); }
          if (p.thumb) { var img = document.createElement('img'); img.src = p.thumb; div.appendChild(img); }
        }
        l.bindPopup(div);
      }
    }).addTo(map);
    overlays[v.name] = layer;
    if (layer.getLayers().length) grow(layer.getBounds());
  });
  L.control.layers(null, overlays, { collapsed: false }).addTo(map);
  L.control.scale().addTo(map);
  if (DATA.legend.length) {
    var lg = L.control({ position: 'bottomright' });
    lg.onAdd = function () {
      var d = L.DomUtil.create('div', 'geossl-legend');
      DATA.legend.forEach(function (c, i) {
        var row = document.createElement('div'), sw = document.createElement('i');
        sw.style.background = c; row.appendChild(sw);
        row.appendChild(document.createTextNode('cluster ' + i)); d.appendChild(row);
      });
      return d;
    };
    lg.addTo(map);
  }
  if (all) map.fitBounds(all, { padding: [10, 10] }); else map.setView([0, 0], 2);
  document.body.setAttribute('data-ready', '1');
})();
