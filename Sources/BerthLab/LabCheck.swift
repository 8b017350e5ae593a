#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import BerthCNI
import BerthCNIClient
import BerthJSON
import BerthSystem
import BerthNet

/// One ping of a connectivity check.
public struct Reachability: Sendable, Equatable {
    public var from: String
    public var to: String
    public var address: String
    /// Whether the topology says `from` reaches `to` (false: it must not).
    public var expected: Bool
    public var reached: Bool
    public var ok: Bool { expected == reached }
}

extension Lab {
    /// The hosts' addresses per network (host -> network -> address), from the attachments.
    public func addresses() -> [String: [String: String]] {
        let prefix = "lab-\(topology.name)-"
        var out: [String: [String: String]] = [:]
        for record in Attachments.list() where record.network.hasPrefix(prefix) {
            let host = String(record.netns.split(separator: "/").last.map { $0.dropFirst(prefix.count) } ?? "")
            let network = String(record.network.dropFirst(prefix.count))
            if let address = record.addresses.first?.split(separator: "/").first {
                out[host, default: [:]][network] = String(address)
            }
        }
        return out
    }

    /// Pings every pair of hosts that share a network (on that network's
    /// address), and every pair in `mustNotReach` (which must fail), at most
    /// `parallel` at a time. Each probe is `ping -c count -W timeout`; a pair
    /// that should reach and does not is probed `retries` more times before it
    /// counts as a miss (a lost echo under load is not a broken network). The
    /// lab must be up.
    public func check(mustNotReach: [(from: String, to: String)] = [], parallel: Int = 16, count: Int = 1,
                      timeout: Int = 1, retries: Int = 2) throws(LabError) -> [Reachability] {
        guard count >= 1, timeout >= 1, retries >= 0 else { throw LabError("count and timeout must be at least 1, retries at least 0") }
        let known = Set(topology.hosts.map(\.name))
        for pair in mustNotReach where !known.contains(pair.from) || !known.contains(pair.to) {
            throw LabError(FieldProblem("mustNotReach", "names \(known.contains(pair.from) ? pair.to : pair.from), which is no host of lab \(topology.name)"))
        }
        let addresses = self.addresses()
        if addresses.isEmpty { throw LabError("lab \(topology.name) is not up") }
        let routes = try plannedRoutes()
        func own(_ host: String) -> [(subnet: IPPrefix, address: IPAddress)] {
            topology.subnets(of: host).compactMap { s in address(of: host, on: s, networkAddresses: addresses).map { (s, $0) } }
        }
        let owned = Dictionary(uniqueKeysWithValues: topology.hosts.map { ($0.name, own($0.name)) })
        func owner(_ ip: IPAddress) -> Topology.Host? {
            topology.hosts.first { owned[$0.name]?.contains { $0.address == ip } == true }
        }
        /// Whether a packet from `from` to `dst` arrives, hop by hop through the
        /// routes and the routers; and the address it leaves `from` with.
        func delivers(from: String, to dst: IPAddress) -> (arrives: Bool, source: IPAddress?) {
            var current = from
            var source: IPAddress?
            for _ in 0..<32 {
                let here = owned[current] ?? []
                if let on = here.first(where: { $0.subnet.contains(dst) }) {
                    return (owner(dst) != nil, source ?? on.address)
                }
                guard let route = routes[current]?.filter({ $0.destination.contains(dst) })
                        .max(by: { $0.destination.prefixLength < $1.destination.prefixLength }),
                      let out = here.first(where: { $0.subnet.contains(route.via) }),
                      let next = owner(route.via), next.forwarding else { return (false, nil) }
                source = source ?? out.address
                current = next.name
            }
            return (false, nil)
        }
        var plan: [Reachability] = []
        for a in topology.hosts {
            for b in topology.hosts where a.name != b.name {
                // On a shared subnet, the address there; else the first it has.
                let shared = owned[b.name]?.first { target in owned[a.name]?.contains { $0.subnet == target.subnet } == true }
                guard let target = shared ?? owned[b.name]?.first else { continue }
                let isolated = mustNotReach.contains { $0.from == a.name && $0.to == b.name }
                let there = delivers(from: a.name, to: target.address)
                let back = there.source.map { delivers(from: b.name, to: $0).arrives } ?? false
                if isolated || (there.arrives && back) {
                    plan.append(Reachability(from: a.name, to: b.name, address: target.address.description,
                                             expected: !isolated, reached: false))
                }
            }
        }
        let results = Results(plan)
        let pings = plan
        let namespaces = Dictionary(uniqueKeysWithValues: topology.hosts.map { ($0.name, namespace($0.name)) })
        let queue = DispatchQueue(label: "berth.lab.check", attributes: .concurrent)
        let group = DispatchGroup()
        for _ in 0..<max(1, min(parallel, plan.count)) {
            queue.async(group: group) {
                while let i = results.next() {
                    let item = pings[i]
                    var reached = false
                    for _ in 0...(item.expected ? retries : 0) {
                        let status = (try? NamedNamespaces.exec(namespaces[item.from] ?? "",
                                                                command: ["ping", "-c", String(count), "-W", String(timeout), "-q", item.address],
                                                                output: results.devNull)) ?? 1
                        if status == 0 { reached = true; break }
                    }
                    results.set(i, reached: reached)
                }
            }
        }
        group.wait()
        return results.all
    }
}

/// The check's shared state: the next ping to do and the outcomes.
private final class Results: @unchecked Sendable {
    private let lock = NSLockLike()
    private var items: [Reachability]
    private var cursor = 0
    let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)

    init(_ items: [Reachability]) { self.items = items }
    deinit { close(devNull) }

    func next() -> Int? {
        lock.withLock {
            guard cursor < items.count else { return nil }
            cursor += 1
            return cursor - 1
        }
    }

    func set(_ i: Int, reached: Bool) { lock.withLock { items[i].reached = reached } }
    var all: [Reachability] { lock.withLock { items } }
}

/// A mutex without Foundation.
final class NSLockLike: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func withLock<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }
}

extension Lab {
    /// The topology as Graphviz DOT: hosts (ellipses), networks (boxes with
    /// subnet and bridge), an edge per interface (with its address once up).
    public func dot() -> String {
        let addresses = self.addresses()
        func q(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        var lines = ["graph \(q(topology.name)) {", "  graph [label=\(q("lab \(topology.name)")), labelloc=t];",
                     "  node [fontname=\"Helvetica\"];"]
        for (i, net) in topology.networks.enumerated() {
            lines.append("  \(q("net:\(net.name)")) [shape=box, style=rounded, label=\(q("\(net.name)\\n\(net.subnet)\\n\(bridgeName(i))"))];")
        }
        for host in topology.hosts {
            lines.append("  \(q("host:\(host.name)")) [shape=ellipse, label=\(q(host.name))];")
            for (j, net) in host.networks.enumerated() {
                let label = "eth\(j)" + (addresses[host.name]?[net].map { "\\n\($0)" } ?? "")
                lines.append("  \(q("host:\(host.name)")) -- \(q("net:\(net)")) [label=\(q(label))];")
            }
        }
        for link in topology.links {
            let label = "\(link.subnet)\n\(link.addresses[0]) - \(link.addresses[1])"
            lines.append("  \(q("host:\(link.ends[0])")) -- \(q("host:\(link.ends[1])")) [style=bold, label=\(q(label))];")
        }
        for host in topology.hosts where host.forwarding {
            lines.append("  \(q("host:\(host.name)")) [shape=doubleoctagon];")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: target) {
            out += rest[..<r.lowerBound] + replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
