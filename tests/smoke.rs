mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn ping_and_create() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let r = c.call("ping", json!({})).await;
    assert_eq!(r["type"], "pong");
    let id = c.create_project(&d.project_dir("a")).await;
    let r = c.call("project_list", json!({})).await;
    assert_eq!(r["data"]["projects"][0]["id"], id);
    let r = c.call("project_join", json!({"project_id": id})).await;
    assert_eq!(r["type"], "project_joined", "{r}");
    let r = c
        .call("execute", json!({"project_id": id, "prompt": "hi"}))
        .await;
    assert_eq!(r["type"], "execute_accepted", "{r}");
    let f = c.recv_type("run_finished").await;
    assert_eq!(f["data"]["status"], "completed", "{f}");
}
