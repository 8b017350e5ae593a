import Foundation
import Testing
import BerthTestSupport

@Suite("pod identity and berthctl policy check", .ownThreads, .serialized, .enabled(if: getuid() == 0, "needs root for namespaces and links"))
struct PolicyCheckTests {
    @Test("attach --namespace/--label records the pod; policy check answers for it, by name or address; detach forgets it")
    func check() throws {
        let f = try WiringFixture.berth(prefix: "pc", subnetBase: "10.216")
        let policies = NSTemporaryDirectory() + "berthtest-policy-\(getpid()).yaml"
        defer {
            f.cleanUp()
            unlink(policies)
        }
        for ns in [f.a, f.b] { #expect(berthctl(["netns", "add", ns]).status == 0) }
        let web = f.attach(f.a, ["--namespace", "shop", "--label", "app=web"])
        #expect(web.status == 0, "\(web.err)")
        let db = f.attach(f.b, ["--namespace", "shop", "--label", "app=db", "--label", "tier=data"])
        #expect(db.status == 0, "\(db.err)")
        let a = "shop/netns-\(f.a)", b = "shop/netns-\(f.b)"
        try """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: db-from-web, namespace: shop}
            spec:
              podSelector: {matchLabels: {app: db}}
              ingress:
              - from: [{podSelector: {matchLabels: {app: web}}}]
                ports: [{port: 5432}]
            """.write(toFile: policies, atomically: false, encoding: .utf8)
        let allowed = berthctl(["policy", "check", "-f", policies, a, b, "5432/tcp"])
        #expect(allowed.status == 0 && allowed.out.contains("allowed") && allowed.out.contains("shop/db-from-web"), "\(allowed.out) \(allowed.err)")
        let wrongPort = berthctl(["policy", "check", "-f", policies, a, b, "80"])
        #expect(wrongPort.status == 1 && wrongPort.out.contains("denied") && wrongPort.out.contains("isolated by shop/db-from-web"),
                "\(wrongPort.out) \(wrongPort.err)")
        let reverse = berthctl(["policy", "check", "-f", policies, b, a, "5432"])
        #expect(reverse.status == 0, "web is selected by no policy: \(reverse.out)")
        // By address: the web pod's, as the plugin recorded it.
        let webAddress = try #require(web.out.split(separator: "\"").first { $0.hasPrefix(f.subnet + ".") }.map { String($0.split(separator: "/")[0]) })
        #expect(berthctl(["policy", "check", "-f", policies, webAddress, b, "5432/tcp"]).status == 0)
        #expect(berthctl(["policy", "check", "-f", policies, "192.0.2.7", b, "5432/tcp"]).status == 1, "an address outside")
        #expect(berthctl(["policy", "check", "-f", policies, "node", b, "80"]).status == 0, "from the node")
        let unknown = berthctl(["policy", "check", "-f", policies, "shop/nobody", b, "5432"])
        #expect(unknown.status != 0 && unknown.err.contains("shop/nobody") && unknown.err.contains(b), "\(unknown.err)")
        let badLabel = f.attach(f.a, ["--label", "app=-web-"])
        #expect(badLabel.status != 0 && badLabel.err.contains("--label app=-web-"), "\(badLabel.err)")
        #expect(f.detach(f.b).status == 0)
        let gone = berthctl(["policy", "check", "-f", policies, a, b, "5432"])
        #expect(gone.status != 0 && gone.err.contains("no pod"), "detach forgets the endpoint: \(gone.err)")
    }

    @Test("run --namespace/--label (detached too) records the container as a pod of that namespace; rm forgets it; a bad label is refused")
    func runIdentity() throws {
        let f = try WiringFixture.berth(prefix: "pr", subnetBase: "10.215")
        let name = "berthtest-pr\(getpid() % 10000)"
        defer {
            _ = berthctl(["rm", name], cniPath: f.cni)
            f.cleanUp()
        }
        func recorded() -> String? {
            let file = "/run/berth/endpoints/\(f.network):\(name):eth0"
            return try? String(contentsOfFile: file, encoding: .utf8)
        }
        let run = berthctl(["run", "--detach", "--name", name, "--net", f.network, "--cni-conf-dir", f.confDir,
                            "--namespace", "shop", "--label", "app=web", "--", "sleep", "30"], cniPath: f.cni)
        try #require(run.status == 0, "\(run.err)")
        let record = try #require(recorded(), "no endpoint record for \(name)")
        #expect(record.contains(#""namespace":"shop""#) && record.contains(#""app":"web""#) && record.contains(#""name":"\#(name)""#), "\(record)")
        #expect(berthctl(["rm", name], cniPath: f.cni).status == 0)
        #expect(cleanWait(5) { recorded() == nil }, "rm forgets the endpoint")
        let bad = berthctl(["run", "--name", name, "--label", "app", "--", "true"])
        #expect(bad.status != 0 && bad.err.contains("--label app: expected KEY=VALUE"), "\(bad.err)")
        let badNamespace = berthctl(["run", "--name", name, "--namespace", "Shop", "--", "true"])
        #expect(badNamespace.status != 0 && badNamespace.err.contains("--namespace \"Shop\""), "\(badNamespace.err)")
    }
}
