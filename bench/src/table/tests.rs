//! The table from sample records, as `scripts/bench compare` would write them.

use super::*;

/// Two runs of each switchyard throughput measure and graphile-worker mode, one of
/// everything else, and a line that is not a record.
const SAMPLE: &str = r#"
switchyard: building (not a record)
{"system":"pgbench","clients":8,"seconds":10,"tps":4321.5}
{"system":"pgbench","clients":64,"seconds":10,"tps":5012.2}
{"system":"graphile-worker","version":"0.17.3","config":"default","mode":"end_to_end","jobs":20000,"seconds":29,"per_second":690.0,"latency_ms":{"p50":40.5,"p99":120.25}}
{"system":"graphile-worker","version":"0.17.3","config":"default","mode":"burn_down","jobs":20000,"seconds":12,"per_second":1667.0,"latency_ms":null}
{"system":"graphile-worker","version":"0.17.3","config":"batching","mode":"end_to_end","jobs":20000,"seconds":21,"per_second":950.0,"latency_ms":{"p50":30.0,"p99":90.0}}
{"system":"graphile-worker","version":"0.17.3","config":"batching","mode":"end_to_end","jobs":20000,"seconds":20,"per_second":1000.0,"latency_ms":{"p50":20.0,"p99":70.0}}
{"system":"graphile-worker","version":"0.17.3","config":"batching","mode":"burn_down","jobs":20000,"seconds":5.6,"per_second":3560.0,"latency_ms":null}
{"system":"switchyard","measure":"idle_rss","rss_kib":30000}
{"system":"switchyard","measure":"idle_streams","streams":10000,"rss_before_kib":31000,"rss_kib":110000,"per_stream_kib":7.9}
{"system":"switchyard","measure":"end_to_end","mutations":20000,"topologies":200,"producers":64,"seconds":6,"per_second":3300.0,"latency_ms":{"p50":9.0,"p99":80.0}}
{"system":"switchyard","measure":"row_writes","mutations":20000,"rows":70000,"per_mutation":3.5,"tables":{"public.mutations":40000,"public.outbox":30000}}
{"system":"switchyard","measure":"end_to_end","mutations":20000,"topologies":200,"producers":64,"seconds":5,"per_second":3000.0,"latency_ms":{"p50":11.0,"p99":120.0}}
{"system":"switchyard","measure":"bulk","mutations":20000,"batch_size":1000,"concurrency":4,"per_second":12000.0,"apply_per_second":14000.0}
{"system":"switchyard","measure":"bulk","mutations":20000,"batch_size":1000,"concurrency":4,"per_second":8000.0,"apply_per_second":9000.0}
{"system":"switchyard","measure":"latency_at_rate","rate":1000,"seconds":10,"applied_ms":{"p50":3.2,"p99":27.5},"sse_ms":{"p50":4.0,"p99":29.0}}
{"system":"machine","cpus":2,"load_average":[3.5,2.25,1],"seconds":300}
"#;

fn table(text: &str) -> String {
    render(&Records::parse(text).unwrap(), false)
}

/// The table row whose measure starts with `measure`, split into its cells.
fn row(table: &str, measure: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.trim_start_matches("| ").starts_with(measure))
        .unwrap_or_else(|| panic!("no row {measure:?} in\n{table}"));
    line.trim_matches('|')
        .split(" | ")
        .map(|cell| cell.trim().to_owned())
        .collect()
}

#[test]
fn end_to_end_is_the_median_against_graphile_batching() {
    let table = table(SAMPLE);
    // Medians of 3,300 and 3,000; of 950 and 1,000.
    assert_eq!(
        row(&table, "end to end"),
        [
            "end to end: single-mutation HTTP → applied, /s",
            "3,150",
            "690",
            "975",
            "3.23×",
            "≥ 3× graphile batching",
            "✓"
        ]
    );
    assert_eq!(
        row(&table, "  its latency")[1..],
        [
            "10.0 / 100 ms",
            "40.5 / 120 ms",
            "25.0 / 80.0 ms",
            "",
            "p99 < 100 ms",
            "✗"
        ]
    );
}

#[test]
fn bulk_and_burn_down() {
    let table = table(SAMPLE);
    assert_eq!(
        row(&table, "bulk enqueue (1,000 per request)")[1..],
        ["10,000", "", "", "", "≥ 10,000/s", "✓"]
    );
    // The bulk run's apply rate against graphile-worker's burn-down; no target.
    assert_eq!(
        row(&table, "worker side")[1..],
        ["11,500", "1,667", "3,560", "3.23×", "", ""]
    );
}

#[test]
fn latency_at_rate_against_its_targets() {
    let table = table(SAMPLE);
    assert_eq!(
        row(&table, "at 1,000/s: 202 → applied")[1..],
        ["3.2 / 27.5 ms", "", "", "", "p50 < 5 ms, p99 < 25 ms", "✗"]
    );
    assert_eq!(
        row(&table, "at 1,000/s: 202 → SSE")[1..],
        ["4.0 / 29.0 ms", "", "", "", "p99 < 30 ms", "✓"]
    );
}

#[test]
fn machine_and_memory() {
    let table = table(SAMPLE);
    assert_eq!(
        row(&table, "ceiling: single-row commits, pgbench 8 clients")[1],
        "4,322"
    );
    assert_eq!(
        row(&table, "ceiling: single-row commits, pgbench 64 clients")[1],
        "5,012"
    );
    assert_eq!(row(&table, "Postgres row writes per mutation")[1], "3.50");
    assert_eq!(
        row(&table, "idle RSS")[1..],
        ["30.7 MB", "", "", "", "< 50 MB", "✓"]
    );
    assert_eq!(
        row(&table, "RSS with 10,000 idle SSE streams")[1..],
        ["112.6 MB", "", "", "", "< 100 MB", "✗"]
    );
    assert_eq!(
        row(&table, "  memory per idle")[1..],
        ["7.9 KiB", "", "", "", "< 8 KiB", "✓"]
    );
    assert!(table.ends_with(
        "\nmachine: 2 CPUs, load average 3.50 / 2.25 / 1.00 (1, 5, 15 min) at the end; \
         the comparison took 300 s\n"
    ));
    assert!(table.starts_with(
        "switchyard vs graphile-worker 0.17.3, same Postgres: 20,000 mutations (jobs) over 200 \
         topologies, 64 producers; figures are medians of 2 run(s)"
    ));
}

#[test]
fn missing_figures_show_as_dashes_and_question_marks() {
    let only_streams = r#"{"system":"switchyard","measure":"idle_streams","streams":1000,"rss_before_kib":31000,"rss_kib":40000,"per_stream_kib":9.2}"#;
    let table = table(only_streams);
    assert_eq!(
        row(&table, "end to end")[1..],
        ["—", "—", "—", "—", "≥ 3× graphile batching", "?"]
    );
    // Fewer than 10,000 streams: the RSS target is not judged, the per-stream one is.
    assert_eq!(
        row(&table, "RSS with 1,000 idle SSE streams")[5..],
        ["< 100 MB (at 10,000 streams)", "?"]
    );
    assert_eq!(row(&table, "  memory per idle")[6], "✗");
}

#[test]
fn verbose_lists_row_writes_per_table() {
    let text = render(&Records::parse(SAMPLE).unwrap(), true);
    assert!(text.contains("row writes, run 1: 70000 rows for 20000 mutations"));
    assert!(text.contains("public.outbox"));
    assert!(!table(SAMPLE).contains("public.outbox"));
}

#[test]
fn a_broken_record_names_its_line() {
    let error = Records::parse("{\"system\":\"pgbench\"}\n{not json")
        .err()
        .unwrap();
    assert_eq!(error.to_string(), "line 2: not JSON");
}

#[test]
fn thousands() {
    assert_eq!(count(0), "0");
    assert_eq!(count(999), "999");
    assert_eq!(count(1000), "1,000");
    assert_eq!(count(1234567), "1,234,567");
}
