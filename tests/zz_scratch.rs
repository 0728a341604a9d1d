mod common;
use common::Worker;
#[test]
fn probe() {
    let rules = std::env::var("RULES").unwrap_or_default();
    let w = Worker::start_with(&[("EDGECACHE_RULES", rules.as_str())]);
    w.get("/v1/orders?limit=1");
    for i in 0..6 {
        let p = format!("/v1/orders?limit=3&offset={}", 100 + i);
        let s0 = w.stats()["edge"].clone();
        let a = w.get_debug(&p);
        let b = w.get_debug(&p);
        let c = w.get_debug(&p);
        let s1 = w.stats()["edge"].clone();
        println!(
            "{} {} {} coalesced+{} fetches+{} overtaken+{} l1 {:?} st_b={:?}",
            a.outcome(),
            b.outcome(),
            c.outcome(),
            common::num(&s1, "coalesced") - common::num(&s0, "coalesced"),
            common::num(&s1, "origin_fetches") - common::num(&s0, "origin_fetches"),
            common::num(&s1, "overtaken") - common::num(&s0, "overtaken"),
            s1["l1"]["entries"],
            b.header("server-timing")
        );
    }
}
