//! The store's contract, run against every database exogate supports: SQLite always, and
//! PostgreSQL when `EXOGATE_TEST_POSTGRES` names a server (`.ci/run` sets it). Each case gets a
//! fresh database.

mod common;

use exogate::secrets::Secrets;
use exogate::store::{AgentInput, Backend, CallFilter, CallKey, CallPatch, PhoneInput, Status, Store};
use serde_json::json;

/// Every backend this run can reach, each with a fresh database.
async fn stores(dir: &std::path::Path) -> Vec<Store> {
    let mut out = vec![Store::open(&common::test_database(dir, None).await).await.expect("sqlite store opens")];
    if common::postgres_admin_url().is_some() {
        let url = common::test_database(dir, Some("postgres")).await;
        let store = Store::open(&url).await.expect("postgres store opens");
        assert_eq!(store.backend(), Backend::Postgres);
        out.push(store);
    }
    out
}

#[tokio::test]
async fn a_call_merges_by_any_of_its_ids_and_its_status_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()).await {
        let backend = store.backend();
        // The Passthru knows the CallSid; the stream knows both; a late Passthru must not go back.
        store.upsert(
            CallKey::call_sid("CA1"),
            CallPatch::new().text("from_number", Some("+919800000001")).status(Status::Connecting).passthru_hit(),
        );
        let key = CallKey {
            id: Some("local-1".into()),
            call_sid: Some("CA1".into()),
            stream_sid: Some("MZ1".into()),
            custom_field: None,
        };
        store.upsert(key.clone(), CallPatch::new().int("sample_rate", Some(16000)).status(Status::InProgress));
        store.event(key.clone(), "start", json!({ "agent": "echo" }));
        store.event(CallKey { stream_sid: Some("MZ1".into()), ..CallKey::default() }, "dtmf", json!({ "digit": "5" }));
        store.upsert(key, CallPatch::new().int("frames_in", Some(250)).status(Status::Completed));
        store.upsert(CallKey::call_sid("CA1"), CallPatch::new().status(Status::Ringing).passthru_hit());
        store.flush().await;

        let row = store.find_call("MZ1").await.unwrap().expect("found by stream_sid");
        assert_eq!(row.call_sid.as_deref(), Some("CA1"), "{backend:?}");
        assert_eq!(row.stream_sid.as_deref(), Some("MZ1"), "{backend:?}");
        assert_eq!(row.from_number.as_deref(), Some("+919800000001"), "{backend:?}");
        assert_eq!(row.sample_rate, Some(16000), "{backend:?}");
        assert_eq!(row.frames_in, Some(250), "{backend:?}");
        assert_eq!(row.status, "completed", "{backend:?}: a late ringing must not undo completed");
        assert_eq!(row.passthru_count, 2, "{backend:?}");
        assert_eq!(store.find_call("CA1").await.unwrap().map(|r| r.id.clone()), Some(row.id.clone()));
        assert_eq!(store.find_call(&row.id).await.unwrap().map(|r| r.id), Some(row.id.clone()));
        assert!(store.find_call("nothing").await.unwrap().is_none());

        let events = store.events(&row.id).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["start", "dtmf"], "{backend:?}");
        assert_eq!(events[1].detail.as_deref(), Some(r#"{"digit":"5"}"#), "{backend:?}");
    }
}

#[tokio::test]
async fn listing_filters_pages_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()).await {
        let backend = store.backend();
        for i in 0..5 {
            let status = if i % 2 == 0 { Status::Completed } else { Status::Failed };
            store.upsert(
                CallKey::call_sid(format!("CA{i}")),
                CallPatch::new().text("agent", Some(if i < 3 { "echo" } else { "bot" })).status(status),
            );
        }
        store.flush().await;
        let all = CallFilter { limit: 2, offset: 0, ..CallFilter::default() };
        let (rows, total) = store.list_calls(&all).await.unwrap();
        assert_eq!((rows.len(), total), (2, 5), "{backend:?}");
        let page2 = CallFilter { limit: 2, offset: 4, ..CallFilter::default() };
        assert_eq!(store.list_calls(&page2).await.unwrap().0.len(), 1, "{backend:?}");
        let echo_done = CallFilter {
            status: Some("completed".into()),
            agent: Some("echo".into()),
            limit: 10,
            ..CallFilter::default()
        };
        let (rows, total) = store.list_calls(&echo_done).await.unwrap();
        let mut sids: Vec<_> = rows.iter().filter_map(|r| r.call_sid.clone()).collect();
        sids.sort();
        assert_eq!((sids, total), (vec!["CA0".to_string(), "CA2".to_string()], 2), "{backend:?}");
    }
}

#[tokio::test]
async fn phones_keep_tokens_encrypted_and_agents_merge_on_update() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = Secrets::from_passphrase("store-test");
    for store in stores(dir.path()).await {
        let backend = store.backend();
        let phone = PhoneInput {
            number: Some("+918000000001".into()),
            account_sid: Some("acc".into()),
            api_key: Some("key".into()),
            api_token: Some("tok-secret".into()),
            subdomain: Some("api.exotel.com".into()),
            max_concurrent: Some(3),
            ..PhoneInput::default()
        };
        store.insert_phone(&secrets, &phone, "p1").await.unwrap();
        assert_eq!(store.phone_token(&secrets, "p1").await.unwrap(), "tok-secret", "{backend:?}");
        let got = store.phone("+918000000001").await.unwrap().expect("by number");
        assert_eq!((got.id.as_str(), got.max_concurrent), ("p1", Some(3)), "{backend:?}");
        let rotate = PhoneInput { api_token: Some("tok-2".into()), ..PhoneInput::default() };
        assert!(store.update_phone(&secrets, "p1", &rotate).await.unwrap());
        assert_eq!(store.phone_token(&secrets, "p1").await.unwrap(), "tok-2", "{backend:?}");
        assert_eq!(store.phone("p1").await.unwrap().map(|p| p.account_sid), Some("acc".into()), "{backend:?}");

        let agent = AgentInput {
            kind: Some("bridge".into()),
            settings: Some(json!({ "url": "ws://127.0.0.1:9/ws" })),
            greeting: Some("hi".into()),
            ..AgentInput::default()
        };
        store.upsert_agent("a1", &agent).await.unwrap();
        let partial = AgentInput { greeting: Some("hello".into()), ..AgentInput::default() };
        store.upsert_agent("a1", &partial).await.unwrap();
        let a = store.agent("a1").await.unwrap().expect("agent");
        assert_eq!((a.kind.as_str(), a.greeting.as_deref()), ("bridge", Some("hello")), "{backend:?}");
        assert!(a.settings.contains("ws://127.0.0.1:9/ws"), "{backend:?}: {}", a.settings);
        assert!(store.delete_agent("a1").await.unwrap());
        assert!(!store.delete_agent("a1").await.unwrap());
        assert!(store.delete_phone("p1").await.unwrap());
        assert!(store.phones().await.unwrap().is_empty(), "{backend:?}");
    }
}

#[tokio::test]
async fn callbacks_dedupe_and_a_restart_marks_running_calls_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()).await {
        let backend = store.backend();
        assert!(store.first_delivery("c1", "completed").await.unwrap(), "{backend:?}");
        assert!(!store.first_delivery("c1", "completed").await.unwrap(), "{backend:?}: a retry is not applied twice");
        assert!(store.first_delivery("c1", "busy").await.unwrap(), "{backend:?}");

        store.upsert(
            CallKey::call_sid("CA-live"),
            CallPatch::new()
                .text("started_at", Some("2026-01-01T00:00:00Z"))
                .text("phone_id", Some("p9"))
                .status(Status::InProgress),
        );
        store.flush().await;
        assert_eq!(store.live_calls_for_phone("p9").await.unwrap(), 1, "{backend:?}");
        assert_eq!(store.mark_interrupted().await.unwrap(), 1, "{backend:?}");
        let row = store.find_call("CA-live").await.unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.stop_reason.as_deref()), ("interrupted", Some("process-restarted")));
        assert_eq!(store.live_calls_for_phone("p9").await.unwrap(), 0, "{backend:?}");
    }
}

#[tokio::test]
async fn a_database_from_a_newer_exogate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![common::test_database(dir.path(), None).await];
    if common::postgres_admin_url().is_some() {
        urls.push(common::test_database(dir.path(), Some("postgres")).await);
    }
    for url in urls {
        drop(Store::open(&url).await.expect("first open migrates"));
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', TRUE, $1, 0)",
        )
        .bind(vec![0u8; 48])
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let err = Store::open(&url).await.err().expect("a newer schema is refused").to_string();
        assert!(err.contains("9999") && err.contains("newer"), "{err}");
        // Reopening did not touch it: the same refusal again.
        assert!(Store::open(&url).await.is_err());
    }
}
