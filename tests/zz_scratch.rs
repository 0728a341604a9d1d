mod common;
use common::Worker;
#[test]
fn probe() {
    let rules = std::env::var("RULES").unwrap_or_default();
    let w = Worker::start_with(&[("EDGECACHE_RULES", rules.as_str())]);
    for p in [
        "/v1/orders?limit=3&offset=17",
        "/v1/orders?limit=3&offset=17",
        "/v1/orders?limit=3&offset=17",
        "/v1/orders?limit=4&offset=17",
        "/v1/orders?limit=4&offset=17",
        "/v1/users?limit=4&offset=17",
        "/v1/users?limit=4&offset=17",
    ] {
        let t = std::time::Instant::now();
        let a = w.get_debug(p);
        println!(
            "{p} {} {:?} st={:?} {:?}",
            a.outcome(),
            a.header("x-edgecache-deps"),
            a.header("server-timing"),
            t.elapsed()
        );
    }
    let s = w.stats();
    println!("{}", s["edge"]);
}
