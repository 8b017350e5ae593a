#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthJSON
import BerthNet
import BerthSystem

/// A pod's attachment as policy needs it: who the pod is and the addresses
/// it holds on one network.
public struct Endpoint: Equatable, Sendable {
    public var attachment: CNIAttachmentKey
    public var identity: PodIdentity
    public var addresses: [IPAddress]
    /// Its DNS names on a network with names (a cluster agent publishes them for the other nodes' servers).
    public var names: [String]

    public init(attachment: CNIAttachmentKey, identity: PodIdentity, addresses: [IPAddress], names: [String] = []) {
        self.attachment = attachment
        self.identity = identity
        self.addresses = addresses
        self.names = names
    }

    public var json: JSON {
        var labels = JSONObject()
        for (k, v) in identity.labels.sorted(by: { $0.key < $1.key }) { labels[k] = .string(v) }
        var o: JSONObject = [
            "network": .string(attachment.network), "containerID": .string(attachment.containerID),
            "ifname": .string(attachment.ifname), "namespace": .string(identity.namespace), "name": .string(identity.name),
            "labels": .object(labels),
            "addresses": .array(addresses.map { .string($0.description) }),
        ]
        if !names.isEmpty { o["names"] = .array(names.map(JSON.string)) }
        return .object(o)
    }

    /// A record read back; nil for one that is not an endpoint's.
    public init?(json: JSON) {
        guard let network = json["network"]?.stringValue, let containerID = json["containerID"]?.stringValue,
              let ifname = json["ifname"]?.stringValue, let namespace = json["namespace"]?.stringValue,
              let name = json["name"]?.stringValue, let addresses = json["addresses"]?.arrayValue else { return nil }
        var labels: [String: String] = [:]
        for (k, v) in json["labels"]?.objectValue?.entries ?? [] {
            guard let s = v.stringValue else { return nil }
            labels[k] = s
        }
        let ips = addresses.compactMap { $0.stringValue.flatMap(IPAddress.init) }
        guard ips.count == addresses.count else { return nil }
        var names: [String] = []
        if let given = json["names"] {
            guard let list = given.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else { return nil }
            names = list.compactMap(\.stringValue)
        }
        self.init(attachment: CNIAttachmentKey(network: network, containerID: containerID, ifname: ifname),
                  identity: PodIdentity(namespace: namespace, name: name, labels: labels), addresses: ips, names: names)
    }
}

/// The node's endpoints, a file each under /run/berth/endpoints (named
/// after the attachment's key): written by ADD once the addresses are set,
/// removed by DEL and by GC; read by `berthctl policy check`. Pods do not
/// outlive a reboot, and neither do these.
public struct EndpointStore {
    public static let defaultDirectory = "/run/berth/endpoints"
    public let directory: String

    public init(directory: String = EndpointStore.defaultDirectory) { self.directory = directory }

    /// The directory, made only the first time (an ADD opens what exists).
    func open(create: Bool) throws(SystemError) -> DirectoryHandle? {
        do {
            return try DirectoryHandle(path: directory, create: false)
        } catch {
            guard error.errno == ENOENT else { throw error }
            guard create else { return nil }
            try DirectoryHandle.makeDirectories(directory)
            return try DirectoryHandle(path: directory, create: false)
        }
    }

    /// Records `endpoint`, replacing what its attachment had (atomically: a
    /// reader sees the old record or the new one).
    public func write(_ endpoint: Endpoint) throws(SystemError) {
        guard let dir = try open(create: true) else { return }
        let scratch = try dir.writeScratch(Array(endpoint.json.serialized().utf8))
        try dir.publish(scratch, as: endpoint.attachment.fileName, in: dir)
    }

    /// Forgets `attachment`; nothing recorded is fine.
    public func remove(_ attachment: CNIAttachmentKey) throws(SystemError) {
        guard let dir = try open(create: false) else { return }
        _ = try dir.remove(attachment.fileName)
    }

    /// Every recorded endpoint (unreadable records are skipped: a reader
    /// must not fail on another process's half-written file, which
    /// publishing rules out, nor on a foreign one).
    public func all() throws(SystemError) -> [Endpoint] {
        guard let dir = try open(create: false) else { return [] }
        var out: [Endpoint] = []
        for name in try dir.names() where !name.hasPrefix(".") {
            guard let bytes = try? dir.read(name), let json = try? JSON.parse(bytes), let e = Endpoint(json: json) else { continue }
            out.append(e)
        }
        return out.sorted { $0.attachment.description < $1.attachment.description }
    }

    /// GC: forgets the endpoints of `network` whose attachment is not in
    /// `valid`; returns what it forgot.
    @discardableResult
    public func removeAll(network: String, except valid: [(containerID: String, ifname: String)]) throws(SystemError) -> [Endpoint] {
        let keep = Set(valid.map { CNIAttachmentKey(network: network, containerID: $0.containerID, ifname: $0.ifname) })
        var gone: [Endpoint] = []
        for e in try all() where e.attachment.network == network && !keep.contains(e.attachment) {
            try remove(e.attachment)
            gone.append(e)
        }
        return gone
    }

    /// The record of `attachment`; nil when there is none (or it is unreadable).
    public func read(_ attachment: CNIAttachmentKey) throws(SystemError) -> Endpoint? {
        guard let dir = try open(create: false), let bytes = try dir.read(attachment.fileName) else { return nil }
        return (try? JSON.parse(bytes)).flatMap { Endpoint(json: $0) }
    }
}
