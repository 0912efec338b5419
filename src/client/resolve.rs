//! `<project>` on the command line: an id, a unique id prefix, a name, or a path (`.` for the
//! current directory).

use serde_json::Value;

use super::session::Session;
use super::Failure;

/// The project `spec` names, as the daemon describes it.
pub async fn project(session: &mut Session, spec: &str) -> Result<Value, Failure> {
    let reply = session
        .call("project_list", None, Value::Null, false)
        .await?;
    let projects = reply["data"]["projects"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    pick(&projects, spec)
}

fn pick(projects: &[Value], spec: &str) -> Result<Value, Failure> {
    let path = local_path(spec);
    let exact = |p: &&Value| {
        p["id"] == spec || p["name"] == spec || path.as_deref().is_some_and(|d| p["path"] == d)
    };
    let found: Vec<&Value> = projects.iter().filter(exact).collect();
    let found = if found.is_empty() && spec.len() >= 4 {
        projects
            .iter()
            .filter(|p| p["id"].as_str().is_some_and(|id| id.starts_with(spec)))
            .collect()
    } else {
        found
    };
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Failure::Failed(format!(
            "no project matches '{spec}' (give an id, a unique id prefix of 4 or more characters, a name or a path; `agentvisor projects` lists them)"
        ))),
        many => Err(Failure::Usage(format!(
            "'{spec}' matches {} projects ({}); give its id",
            many.len(),
            many.iter()
                .filter_map(|p| p["id"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The canonical form of `spec` when it names an existing local directory.
pub fn local_path(spec: &str) -> Option<String> {
    let p = std::fs::canonicalize(spec).ok()?;
    p.is_dir().then(|| p.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn by_id_prefix_name_and_ambiguity() {
        let ps = [
            json!({"id": "abcd-1", "name": "shop", "path": "/x/shop"}),
            json!({"id": "abce-2", "name": "blog", "path": "/x/blog"}),
        ];
        assert_eq!(pick(&ps, "abcd-1").unwrap()["name"], "shop");
        assert_eq!(pick(&ps, "blog").unwrap()["id"], "abce-2");
        assert_eq!(pick(&ps, "abce").unwrap()["name"], "blog");
        assert_eq!(
            pick(&ps, "abc").unwrap_err().exit_code(),
            1,
            "too short a prefix"
        );
        assert_eq!(pick(&ps, "nope").unwrap_err().exit_code(), 1);
        let twins = [
            json!({"id": "abcd-1", "name": "a"}),
            json!({"id": "abcd-2", "name": "b"}),
        ];
        assert_eq!(pick(&twins, "abcd").unwrap_err().exit_code(), 2);
    }
}
