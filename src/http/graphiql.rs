//! The GraphiQL page. Its scripts come from the unpkg CDN at pinned versions, or, with
//! `--graphiql-assets DIR`, from a local npm install of the same versions served at
//! [`ASSETS_PATH`] (for networks that cannot reach the CDN).

/// Where local GraphiQL assets are served.
pub const ASSETS_PATH: &str = "/graphql/assets";

/// The pinned versions (the last GraphiQL with a UMD build, and its React).
pub const VERSIONS: [(&str, &str); 3] = [
    ("graphiql", "3.8.3"),
    ("react", "18.3.1"),
    ("react-dom", "18.3.1"),
];

const FILES: [(&str, &str); 4] = [
    ("react", "umd/react.production.min.js"),
    ("react-dom", "umd/react-dom.production.min.js"),
    ("graphiql", "graphiql.min.js"),
    ("graphiql", "graphiql.min.css"),
];

const DEFAULT_QUERY: &str = r#"# fordeler: events and register data over GraphQL.
# The latest events of BBR's buildings, then ask for more with after: "<endCursor>".
query LatestBuildingEvents {
  BBR_Events(first: 10, where: { entityname: { eq: "Bygning" } }) {
    pageInfo { hasNextPage endCursor }
    nodes {
      eventid entityname eventaction object_id
      object_datafordelerRowId object_datafordelerRowVersion
      object_registreringfra object_registreringtil
    }
  }
  RegisterImportStatus { register lastSequenceNumber lastEventId lastUpdated importRunning }
}
"#;

/// The page; `local` serves the assets from [`ASSETS_PATH`] instead of the CDN.
pub fn page(local: bool) -> String {
    let url = |(package, file): (&str, &str)| {
        if local {
            format!("{ASSETS_PATH}/{package}/{file}")
        } else {
            let version = VERSIONS
                .iter()
                .find(|(p, _)| *p == package)
                .map_or("", |(_, v)| v);
            format!("https://unpkg.com/{package}@{version}/{file}")
        }
    };
    let [react, react_dom, graphiql, css] = FILES.map(url);
    let query = serde_json::to_string(DEFAULT_QUERY).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fordeler GraphiQL</title>
<style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
<link rel="stylesheet" href="{css}">
<script src="{react}"></script>
<script src="{react_dom}"></script>
<script src="{graphiql}"></script>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script>
const fetcher = GraphiQL.createFetcher({{ url: new URL('/graphql', window.location.href).href }});
ReactDOM.createRoot(document.getElementById('graphiql')).render(
  React.createElement(GraphiQL, {{ fetcher, defaultQuery: {query}, defaultEditorToolsVisibility: true }})
);
</script>
</body>
</html>
"#
    )
}
