import Foundation
import Testing
import BerthTestSupport
import BerthCNI
@testable import BerthLab
import BerthJSON
import BerthNet

@Suite("lab topologies with links and routers")
struct RoutedTopologyTests {

    @Test("links take their addresses from their subnet, in the order of their ends, or as given")
    func links() throws {
        let t = try Topology.parse(SampleTopologies.twoRouters)
        #expect(t.links.count == 1 && t.links[0].addresses.map(\.description) == ["10.231.9.1", "10.231.9.2"])
        #expect(t.links[0].interface(in: "r1") == "to-r2")
        #expect(t.subnets(of: "r1").map(\.description) == ["10.231.1.0/24", "10.231.9.0/30"])
    }

    @Test("autoRoutes sends each host's traffic for a far subnet through the nearest router")
    func planned() throws {
        let hops = try RoutePlanner(try Topology.parse(SampleTopologies.twoRouters)).firstHops()
        #expect(hops["h1"]?[IPPrefix("10.231.2.0/24")!] == .init(subnet: IPPrefix("10.231.1.0/24")!, router: "r1"))
        #expect(hops["h1"]?[IPPrefix("10.231.9.0/30")!]?.router == "r1")
        #expect(hops["r1"]?[IPPrefix("10.231.2.0/24")!] == .init(subnet: IPPrefix("10.231.9.0/30")!, router: "r2"))
        #expect(hops["h2"]?[IPPrefix("10.231.1.0/24")!]?.router == "r2")
    }

    @Test("bad link and route declarations are refused naming the key, before anything is made",
          arguments: [("links:\n  - ends: [r1, nobody]\n    subnet: 10.231.8.0/30", "links[0].ends[1]", "unknown link end nobody"),
                      ("links:\n  - ends: [r1, r2]\n    subnet: 10.231.1.0/30", "links[0].subnet", "overlaps network left"),
                      ("links:\n  - ends: [r1, r1]\n    subnet: 10.231.8.0/30", "links[0].ends", "two different hosts")])
    func badLinks(extra: String, location: String, says: String) {
        let text = SampleTopologies.twoRouters.replacingOccurrences(of: "links:\n  - ends: [r1, r2]\n    subnet: 10.231.9.0/30", with: extra)
        #expect(text != SampleTopologies.twoRouters)
        do {
            _ = try Topology.parse(text)
            Issue.record("accepted: \(extra)")
        } catch {
            #expect(error.location.hasPrefix(location) && error.message.contains(says), "\(error)")
        }
    }

    @Test("a route whose next hop is on none of the host's subnets is refused")
    func unresolvedRoute() {
        let text = SampleTopologies.twoRouters.replacingOccurrences(
            of: "  - name: h1\n    networks: [left]\n",
            with: "  - name: h1\n    networks: [left]\n    routes:\n      - to: 10.231.2.0/24\n        via: 10.231.9.2\n")
        do {
            _ = try Topology.parse(text)
            Issue.record("accepted a route that does not resolve")
        } catch {
            #expect(error.location.hasPrefix("hosts[0].routes[0].via") && error.message.contains("would not resolve"), "\(error)")
        }
    }

    @Test("two routers at the same distance to a subnet make autoRoutes ambiguous, and the lab is refused")
    func ambiguous() {
        let text = """
        name: amb
        autoRoutes: true
        networks:
          - name: a
            subnet: 10.231.1.0/24
          - name: b
            subnet: 10.231.2.0/24
        hosts:
          - name: h
            networks: [a]
          - name: r1
            networks: [a, b]
            forwarding: true
          - name: r2
            networks: [a, b]
            forwarding: true
        """
        do {
            _ = try Topology.parse(text)
            Issue.record("accepted an ambiguous topology")
        } catch {
            #expect(error.location.hasPrefix("autoRoutes") && error.message.contains("ambiguous") && error.message.contains("r1")
                    && error.message.contains("r2"), "\(error)")
        }
    }
}
