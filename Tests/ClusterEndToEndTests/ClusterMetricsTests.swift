import Foundation
import Testing
import BerthJSON
import BerthTestSupport

/// An HTTP GET of an address the test gave out: status and body.
func httpGet(_ url: String) -> (status: Int, body: String) {
    let script = """
        import sys, urllib.request, urllib.error
        try:
            r = urllib.request.urlopen(sys.argv[1], timeout=3)
            print(r.status); sys.stdout.write(r.read().decode())
        except urllib.error.HTTPError as e:
            print(e.code); sys.stdout.write(e.read().decode())
        except Exception as e:
            print(0); sys.stdout.write(str(e))
        """
    let out = shell(["python3", "-c", script, url]).out
    let lines = out.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
    return (Int(lines.first ?? "") ?? 0, lines.count > 1 ? String(lines[1]) : "")
}

@Suite("agent health and metrics", .ownThreads, .serialized,
       .enabled(if: runningAsRoot && FileManager.default.fileExists(atPath: "/usr/bin/etcd") && FileManager.default.fileExists(atPath: "/usr/bin/prometheus"),
                "needs root, etcd and prometheus (scripts/setup.sh installs them)"))
struct ClusterMetricsTests {
    @Test("/healthz always, /readyz 503 until the block is held and 200 after, /metrics passes promtool, and a real Prometheus scraping three agents sees their peers")
    func metricsScrapedByPrometheus() throws {
        let c = try SimulatedCluster(mode: "vxlan", nodes: 3)
        var prometheus: Process?
        defer {
            if let p = prometheus { p.terminate(); p.waitUntilExit() }
            c.cleanUp()
        }
        let port = 9641
        func url(_ i: Int, _ path: String) -> String { "http://\(c.nodeAddress(i)):\(port)\(path)" }
        // etcd away: the agent is up (healthz) but not ready.
        c.stopEtcd()
        try c.startAgent(0, extra: ["--metrics-address", "\(c.nodeAddress(0)):\(port)"])
        #expect(c.wait(seconds: 10) { httpGet(url(0, "/healthz")).status == 200 } != nil, "healthz: \(httpGet(url(0, "/healthz")))")
        let notReady = httpGet(url(0, "/readyz"))
        #expect(notReady.status == 503 && notReady.body.contains("no block held yet"), "\(notReady)")
        try c.startEtcd()
        #expect(c.wait(seconds: 20) { httpGet(url(0, "/readyz")).status == 200 } != nil,
                "readyz after etcd came: \(httpGet(url(0, "/readyz"))) \((try? String(contentsOfFile: c.agentLog(0), encoding: .utf8)) ?? "")")
        for i in 1..<3 { try c.startAgent(i, extra: ["--metrics-address", "\(c.nodeAddress(i)):\(port)"]) }
        #expect(c.wait(seconds: 20) { (0..<3).allSatisfy { c.routes($0).count == 2 } } != nil, "no convergence")
        #expect(c.wait(seconds: 10) { (0..<3).allSatisfy { httpGet(url($0, "/readyz")).status == 200 } } != nil)

        let metrics = httpGet(url(0, "/metrics"))
        #expect(metrics.status == 200)
        for name in ["berth_agent_peers 2", "berth_agent_ready 1", "berth_agent_programmed_entries{kind=\"route\"} 2",
                     "berth_agent_programmed_entries{kind=\"fdb\"} 2", "berth_agent_kernel_changes_total{kind=\"route\",action=\"added\"}",
                     "berth_agent_etcd_request_duration_seconds_bucket", "berth_agent_lease_renewals_total", "berth_agent_reconcile_runs_total"] {
            #expect(metrics.body.contains(name), "\(name) missing from /metrics:\n\(metrics.body)")
        }
        let check = shellMerged(["sh", "-c", "promtool check metrics"], input: metrics.body)
        #expect(check.status == 0, "promtool check metrics: \(check.out)")
        #expect(httpGet(url(0, "/nothing")).status == 404)

        // A real Prometheus, on loopback, scraping the three agents every second.
        let promPort = Int.random(in: 40000...49999)
        let config = "\(c.work)/prometheus.yml"
        try """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            scrape_configs:
            - job_name: berth
              static_configs:
              - targets: [\((0..<3).map { "'\(c.nodeAddress($0)):\(port)'" }.joined(separator: ", "))]
            """.write(toFile: config, atomically: false, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        p.arguments = ["--config.file=\(config)", "--storage.tsdb.path=\(c.work)/prometheus", "--web.listen-address=127.0.0.1:\(promPort)"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        prometheus = p
        let query = "http://127.0.0.1:\(promPort)/api/v1/query?query=berth_agent_peers"
        var seen: [String: String] = [:]
        let scraped = c.wait(seconds: 30) {
            guard let json = try? JSON.parse(httpGet(query).body), let results = json["data"]?["result"]?.arrayValue else { return false }
            seen = [:]
            for r in results {
                if let instance = r["metric"]?["instance"]?.stringValue, let value = r["value"]?.arrayValue?.last?.stringValue { seen[instance] = value }
            }
            return seen.count == 3
        }
        #expect(scraped != nil, "Prometheus saw \(seen) (\(httpGet(query)))")
        #expect(Set(seen.values) == ["2"], "each agent has two peers: \(seen)")
    }
}

/// conf/berth-alerts.yml, the alerting rules docs/cluster.md recommends.
let alertRules = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("conf/berth-alerts.yml").path

@Suite("alerting rules", .ownThreads, .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/promtool"), "needs promtool (prometheus, scripts/setup.sh)"))
struct AlertRulesTests {
    @Test("conf/berth-alerts.yml passes promtool check rules, and its rules fire on the series they are for (promtool test rules)")
    func rules() throws {
        let check = shellMerged(["promtool", "check", "rules", alertRules])
        #expect(check.status == 0 && check.out.contains("SUCCESS"), "\(check.out)")
        let dir = NSTemporaryDirectory() + "berth-alerts-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: alertRules, toPath: "\(dir)/berth-alerts.yml")
        // Three nodes: n1 never ready; n0 sees one peer where two are ready besides it;
        // n2's routes were changed by hand once; n0 refused a record.
        let tests = """
            rule_files: [berth-alerts.yml]
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: 'berth_agent_ready{instance="n0"}'
                    values: '1x10'
                  - series: 'berth_agent_ready{instance="n1"}'
                    values: '0x10'
                  - series: 'berth_agent_ready{instance="n2"}'
                    values: '1x10'
                  - series: 'berth_agent_ready{instance="n3"}'
                    values: '1x10'
                  - series: 'berth_agent_peers{instance="n0"}'
                    values: '1x10'
                  - series: 'berth_agent_peers{instance="n2"}'
                    values: '2x10'
                  - series: 'berth_agent_peers{instance="n3"}'
                    values: '2x10'
                  - series: 'berth_agent_reconcile_repairs_total{instance="n2"}'
                    values: '0 0 0 3 3 3 3 3 3 3 3'
                  - series: 'berth_agent_rejected_records_total{instance="n0"}'
                    values: '0 0 0 0 1 1 1 1 1 1 1'
                alert_rule_test:
                  - eval_time: 6m
                    alertname: BerthAgentNotReady
                    exp_alerts:
                      - exp_labels: {severity: critical, instance: n1}
                        exp_annotations: {summary: "node n1 holds no block or has not programmed its peers (see /readyz)"}
                  - eval_time: 6m
                    alertname: BerthAgentMeshIncomplete
                    exp_alerts:
                      - exp_labels: {severity: warning, instance: n0}
                        exp_annotations: {summary: "node n0 programs 1 peers, fewer than the other ready nodes"}
                  - eval_time: 6m
                    alertname: BerthAgentKernelChangedByHand
                    exp_alerts:
                      - exp_labels: {severity: info, instance: n2}
                        exp_annotations: {summary: "someone changed the routes or entries of n2 by hand; the agent put them right"}
                  - eval_time: 6m
                    alertname: BerthAgentRejectedRecords
                    exp_alerts:
                      - exp_labels: {severity: warning, instance: n0}
                        exp_annotations: {summary: "n0 refused node records from etcd (broken or hostile writers under /berth/)"}
                  - eval_time: 6m
                    alertname: BerthAgentLeaseLost
                    exp_alerts: []
            """
        try Data(tests.utf8).write(to: URL(fileURLWithPath: "\(dir)/berth-alerts-test.yml"))
        let run = shellMerged(["sh", "-c", "cd '\(dir)' && promtool test rules berth-alerts-test.yml"])
        #expect(run.status == 0 && run.out.contains("SUCCESS"), "\(run.out)")
    }
}
