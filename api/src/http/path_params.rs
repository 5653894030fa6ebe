//! Real names of path parameters for error messages.
//!
//! poem-openapi renames path parameters to `param0`, `param1`, … internally, so
//! its parse errors would tell a client "param0 is invalid". This maps such an
//! index back to the name in the OpenAPI path template (`/v1/users/{userId}`).

/// The path templates of the OpenAPI document, split into segments.
#[derive(Clone, Debug, Default)]
pub struct PathTemplates(Vec<Vec<String>>);

impl PathTemplates {
    /// Reads the `paths` of an OpenAPI JSON document.
    pub fn from_spec(spec_json: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
        let paths = spec.get("paths").and_then(|p| p.as_object());
        Self(
            paths
                .into_iter()
                .flat_map(|p| p.keys())
                .map(|k| segments(k).map(str::to_owned).collect())
                .collect(),
        )
    }

    /// The name of the `index`-th path parameter of the template `path` matches.
    pub fn param_name(&self, path: &str, index: usize) -> Option<&str> {
        let actual: Vec<&str> = segments(path).collect();
        let template = self.0.iter().find(|t| {
            t.len() == actual.len() && t.iter().zip(&actual).all(|(t, a)| is_param(t) || t == a)
        })?;
        let name = template.iter().filter(|t| is_param(t)).nth(index)?;
        Some(&name[1..name.len() - 1])
    }
}

impl PathTemplates {
    /// The template `path` matches (`/v1/users/{userId}`), preferring literal
    /// segments over parameters: a bounded metrics label, never the raw path.
    pub fn template(&self, path: &str) -> Option<String> {
        let actual: Vec<&str> = segments(path).collect();
        let template = self
            .0
            .iter()
            .filter(|t| {
                t.len() == actual.len() && t.iter().zip(&actual).all(|(t, a)| is_param(t) || t == a)
            })
            .min_by_key(|t| t.iter().filter(|s| is_param(s)).count())?;
        Some(format!("/{}", template.join("/")))
    }
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
}
