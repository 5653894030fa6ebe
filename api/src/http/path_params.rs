//! Real names of path parameters for error messages.
//!
//! poem-openapi renames path parameters to `param0`, `param1`, … internally, so
//! its parse errors would tell a client "param0 is invalid". This maps such an
//! index back to the name in the OpenAPI path template (`/v1/users/{userId}`).
//! The same templates name a request's route for metrics and the methods a
//! 405 answer lists in `Allow`.

/// The path templates of the OpenAPI document, split into segments, each with
/// the methods it has (upper case, alphabetical).
#[derive(Clone, Debug, Default)]
pub struct PathTemplates(Vec<(Vec<String>, Vec<String>)>);

impl PathTemplates {
    /// Reads the `paths` of an OpenAPI JSON document.
    pub fn from_spec(spec_json: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
        let paths = spec.get("paths").and_then(|p| p.as_object());
        Self(
            paths
                .into_iter()
                .flatten()
                .map(|(k, ops)| {
                    let mut methods: Vec<String> = ops
                        .as_object()
                        .into_iter()
                        .flat_map(|o| o.keys())
                        .filter(|m| HTTP_METHODS.contains(&m.as_str()))
                        .map(|m| m.to_uppercase())
                        .collect();
                    methods.sort_unstable();
                    (segments(k).map(str::to_owned).collect(), methods)
                })
                .collect(),
        )
    }

    /// The name of the `index`-th path parameter of the template `path` matches.
    pub fn param_name(&self, path: &str, index: usize) -> Option<&str> {
        let actual: Vec<&str> = segments(path).collect();
        let (template, _) = self.0.iter().find(|(t, _)| matches(t, &actual))?;
        let name = template.iter().filter(|t| is_param(t)).nth(index)?;
        Some(&name[1..name.len() - 1])
    }

    /// The template `path` matches (`/v1/users/{userId}`), preferring literal
    /// segments over parameters: a bounded metrics label, never the raw path.
    pub fn template(&self, path: &str) -> Option<String> {
        let (template, _) = self.best(path)?;
        Some(format!("/{}", template.join("/")))
    }

    /// The methods of the template `path` matches, for a 405's `Allow` header
    /// (RFC 9110 §15.5.6), e.g. `GET, POST`.
    pub fn allow(&self, path: &str) -> Option<String> {
        let (_, methods) = self.best(path)?;
        Some(methods.join(", "))
    }

    fn best(&self, path: &str) -> Option<&(Vec<String>, Vec<String>)> {
        let actual: Vec<&str> = segments(path).collect();
        self.0
            .iter()
            .filter(|(t, _)| matches(t, &actual))
            .min_by_key(|(t, _)| t.iter().filter(|s| is_param(s)).count())
    }
}

/// The keys of an OpenAPI path item that are operations.
const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn matches(template: &[String], actual: &[&str]) -> bool {
    template.len() == actual.len()
        && template
            .iter()
            .zip(actual)
            .all(|(t, a)| is_param(t) || t == a)
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn is_param(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

/// `param3` → 3.
pub fn internal_index(name: &str) -> Option<usize> {
    name.strip_prefix("param")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_names_map_to_template_names() {
        let t = PathTemplates::from_spec(
            r#"{"paths":{"/v1/users/{userId}":{},"/v1/concerts/{concertId}/schedules":{}}}"#,
        );
        assert_eq!(t.param_name("/v1/users/nope", 0), Some("userId"));
        assert_eq!(
            t.param_name("/v1/concerts/x/schedules", 0),
            Some("concertId")
        );
        assert_eq!(t.param_name("/v1/other/x", 0), None);
        assert_eq!(internal_index("param1"), Some(1));
    }

    #[test]
    fn paths_map_to_their_template_literal_first() {
        let t = PathTemplates::from_spec(
            r#"{"paths":{"/v1/jobs/{jobId}":{},"/v1/jobs/stats":{},"/health":{}}}"#,
        );
        assert_eq!(
            t.template("/v1/jobs/0193").as_deref(),
            Some("/v1/jobs/{jobId}")
        );
        assert_eq!(
            t.template("/v1/jobs/stats").as_deref(),
            Some("/v1/jobs/stats")
        );
        assert_eq!(t.template("/health").as_deref(), Some("/health"));
        assert_eq!(t.template("/nope/1"), None);
    }

    #[test]
    fn a_path_allows_the_methods_of_its_template() {
        let t = PathTemplates::from_spec(
            r#"{"paths":{"/v1/users":{"post":{},"get":{},"parameters":[]},"/v1/users/{id}":{"delete":{}}}}"#,
        );
        assert_eq!(t.allow("/v1/users").as_deref(), Some("GET, POST"));
        assert_eq!(t.allow("/v1/users/7").as_deref(), Some("DELETE"));
        assert_eq!(t.allow("/v2"), None);
    }
}
