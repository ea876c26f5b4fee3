//! The backend conformance suite (`engine::conformance_tests!`) and the large-result check
//! against the Azure backend on the Azurite that `cargo xtask test` starts
//! (`TESSERA_AZURITE`): each test on its own tables and queues.

use engine::ports::Backend;
use engine_azure::{AzureBackend, AzureConfig, Credentials};

/// A fresh set of tables and queues (a random prefix) on the Azurite that `cargo xtask
/// test` started; its connection string is in `TESSERA_AZURITE`.
async fn make() -> (Backend, ()) {
    let connection = std::env::var("TESSERA_AZURITE").expect(
        "TESSERA_AZURITE is not set: run the tests with `cargo xtask test` (it starts \
         Azurite) or set it to the connection string of a running Azurite",
    );
    let prefix = format!("t{:012x}", rand::random::<u64>() >> 16);
    let config = AzureConfig::new(Credentials::ConnectionString(connection)).with_prefix(prefix);
    let backend = AzureBackend::connect(&config)
        .await
        .expect("Azurite reachable");
    (backend.backend(), ())
}

engine::conformance_tests!(make);

#[tokio::test]
async fn large_results_go_to_blob_and_come_back() {
    use engine::model::*;
    use engine::ports::{PageRequest, TaskQuery};
    let (b, ()) = make().await;
    let id = engine::ids::job_id("big", 1, &serde_json::json!({})).unwrap();
    let specs = vec![TaskSpec::parallel("a", 0)];
    let defaults = |_: &str| {
        Some(engine::graph::HandlerDefaults {
            task_version: 1,
            retry: engine::RetryPolicy::NO_RETRY,
            timeout: std::time::Duration::from_secs(10),
        })
    };
    let tasks: Vec<TaskRecord> =
        engine::graph::plan(&id, specs, engine::graph::PlanScope::Job, &defaults, 1)
            .unwrap()
            .into_records()
            .collect();
    b.tasks.insert_tasks(&id, &tasks).await.unwrap();
    let mut t = b.tasks.get_task(&id, &tasks[0].id).await.unwrap().unwrap();
    let big = serde_json::json!({ "blob": "x".repeat(200_000) });
    t.status = TaskStatus::Running;
    t.result = Some(big.clone());
    b.tasks.update_task(&t, &[]).await.unwrap().unwrap();
    let got = b.tasks.get_task(&id, &t.id).await.unwrap().unwrap();
    assert_eq!(got.result.as_ref(), Some(&big), "read back from the blob");
    let page = b
        .tasks
        .list_tasks(&id, &TaskQuery::default(), PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items[0].result.as_ref(), Some(&big));
}
