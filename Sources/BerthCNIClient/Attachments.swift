#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthSystem
import BerthJSON
import BerthNet

/// Networks attached by hand to network namespaces (`berthctl attach`),
/// through the same plugin chains the runtime uses, with a record each under
/// /var/lib/berth/attachments so that `detach`, `check`, `ls` and `gc` know them.
public enum Attachments {
    public static let directory = "/var/lib/berth/attachments"

    /// One attachment as recorded.
    public struct Record: Sendable {
        public var network: String
        public var containerID: String
        public var netns: String
        public var ifname: String
        public var cniConfDirectory: String
        public var cniPath: [String]
        public var result: JSON

        var fileName: String { Attachments.fileName(network: network, containerID: containerID, ifname: ifname) }

        /// The addresses of the result (any version).
        public var addresses: [String] {
            (result["ips"]?.arrayValue ?? []).compactMap { $0["address"]?.stringValue }
                + ["ip4", "ip6"].compactMap { result[$0]?["ip"]?.stringValue }
        }

        func json() -> JSON {
            .object([
                "network": .string(network), "containerID": .string(containerID), "netns": .string(netns),
                "ifname": .string(ifname), "cniConfDirectory": .string(cniConfDirectory),
                "cniPath": .array(cniPath.map(JSON.string)), "result": result,
            ])
        }

        init?(json: JSON) {
            guard let network = json["network"]?.stringValue, let id = json["containerID"]?.stringValue,
                  let netns = json["netns"]?.stringValue, let ifname = json["ifname"]?.stringValue else { return nil }
            self.network = network
            containerID = id
            self.netns = netns
            self.ifname = ifname
            cniConfDirectory = json["cniConfDirectory"]?.stringValue ?? NetworkList.defaultDirectory
            cniPath = json["cniPath"]?.arrayValue?.compactMap(\.stringValue) ?? PluginChain.defaultSearchPath
            result = json["result"] ?? .object([:])
        }

        init(network: String, containerID: String, netns: String, ifname: String, cniConfDirectory: String,
             cniPath: [String], result: JSON) {
            self.network = network
            self.containerID = containerID
            self.netns = netns
            self.ifname = ifname
            self.cniConfDirectory = cniConfDirectory
            self.cniPath = cniPath
            self.result = result
        }
    }

    /// The container ID libcni needs, made from the namespace: its name under
    /// /run/netns, or its path, with every character CNI does not allow replaced.
    public static func containerID(forNamespace path: String) -> String {
        let source = path.hasPrefix(NamedNamespaces.directory + "/")
            ? String(path.dropFirst(NamedNamespaces.directory.count + 1)) : path
        let cleaned = String(source.map { c -> Character in
            c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "." || c == "-") ? c : "-"
        })
        return "netns-" + cleaned.trimmingPrefix(while: { $0 == "-" })
    }

    /// An attachment's record: named after its CNI key.
    static func fileName(network: String, containerID: String, ifname: String) -> String {
        CNIAttachmentKey(network: network, containerID: containerID, ifname: ifname).fileName
    }

    static func store() throws(ClientError) -> DirectoryHandle {
        do { return try DirectoryHandle(path: directory, create: true) } catch {
            throw ClientError("cannot open \(directory): \(error)")
        }
    }

    /// ADD of `network`'s whole chain for the namespace; records the result.
    @discardableResult
    public static func attach(network: String, netns: String, ifname: String = "eth0", ip: String? = nil, mac: String? = nil,
                              namespace: String? = nil, labels: [String: String] = [:], name: String? = nil,
                              cniConfDirectory: String = NetworkList.defaultDirectory,
                              cniPath: [String] = PluginChain.defaultSearchPath) throws(ClientError) -> Record {
        try ClientError.requireRoot("attaching a namespace")
        if let problem = CNIEnvironment.interfaceNameProblem(ifname) { throw ClientError(FieldProblem("ifname", "\(ifname): \(problem)")) }
        let path = try NamedNamespaces.resolve(netns)
        let list = try NetworkList.load(name: network, directory: cniConfDirectory)
        let id = containerID(forNamespace: path)
        var record = Record(network: network, containerID: id, netns: path, ifname: ifname,
                            cniConfDirectory: cniConfDirectory, cniPath: cniPath, result: .null)
        let dir = try store()
        if (try? dir.exists(record.fileName)) == true {
            throw ClientError("\(netns) is attached to \(network) as \(ifname) already (detach it first)")
        }
        var runtime = JSONObject()
        if let ip { runtime["ips"] = .array([.string(ip)]) }
        if let mac { runtime["mac"] = .string(mac) }
        // A request no plugin takes would be dropped without a word, as libcni drops it: refused instead.
        for capability in ["ips", "mac"] where runtime[capability] != nil {
            if !list.plugins.contains(where: { $0["capabilities"]?[capability] == .bool(true) }) {
                throw ClientError(FieldProblem(capability == "ips" ? "ip" : "mac",
                                               "is given, but no plugin of network \(network) declares the \"\(capability)\" capability (in \(list.path)), so it would be ignored"))
            }
        }
        let chain = PluginChain(list: list, searchPath: cniPath)
        var identity = JSONObject()
        if let namespace { identity["namespace"] = .string(namespace) }
        // The attachment's name on a network with names (and the pod's name for policy).
        if let name { identity["podName"] = .string(name) }
        if !labels.isEmpty {
            var l = JSONObject()
            for (k, v) in labels.sorted(by: { $0.key < $1.key }) { l[k] = .string(v) }
            identity["labels"] = .object(l)
        }
        record.result = try chain.add(PluginChain.Attachment(containerID: id, netns: path, ifname: ifname, runtimeConfig: runtime,
                                                             cniArgs: identity))
        do {
            let scratch = try dir.writeScratch(Array(record.json().serialized(pretty: true).utf8))
            try dir.publish(scratch, as: record.fileName, in: dir)
        } catch {
            try? chain.del(PluginChain.Attachment(containerID: id, netns: path, ifname: ifname))
            throw ClientError("cannot record the attachment: \(error)")
        }
        // A network with names gave its DNS server: the named namespace's resolv.conf (as `ip netns exec` reads it).
        let dns = record.result["dns"]
        let servers = dns?["nameservers"]?.arrayValue?.compactMap(\.stringValue) ?? []
        if !servers.isEmpty, path.hasPrefix(NamedNamespaces.directory + "/") {
            let name = String(path.dropFirst(NamedNamespaces.directory.count + 1))
            do {
                try NamedNamespaces.writeResolvConf(name, network: network, nameservers: servers,
                                                    search: dns?["search"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            } catch {
                _ = try? detach(network: network, netns: path, ifname: ifname)
                throw error
            }
        }
        return record
    }

    static func find(network: String, netns: String, ifname: String) throws(ClientError) -> Record {
        let path = netns.hasPrefix("/") ? netns : NamedNamespaces.path(netns)
        let id = containerID(forNamespace: path)
        guard let dir = try? DirectoryHandle(path: directory, create: false),
              let bytes = (try? dir.read(fileName(network: network, containerID: id, ifname: ifname))) ?? nil,
              let json = try? JSON.parse(bytes), let record = Record(json: json) else {
            throw ClientError("\(netns) is not attached to \(network) as \(ifname)")
        }
        return record
    }

    /// DEL of the chain in reverse with the cached result; the record goes.
    /// Works when the namespace is already gone. Like DEL, detaching what is
    /// not attached is no error: it returns false.
    @discardableResult
    public static func detach(network: String, netns: String, ifname: String = "eth0") throws(ClientError) -> Bool {
        try ClientError.requireRoot("detaching a namespace")
        guard let record = try? find(network: network, netns: netns, ifname: ifname) else { return false }
        let list = try NetworkList.load(name: network, directory: record.cniConfDirectory)
        let existing = access(record.netns, F_OK) == 0 ? record.netns : ""
        try PluginChain(list: list, searchPath: record.cniPath)
            .del(PluginChain.Attachment(containerID: record.containerID, netns: existing, ifname: ifname))
        _ = try? store().remove(record.fileName)
        if record.netns.hasPrefix(NamedNamespaces.directory + "/") {
            NamedNamespaces.removeResolvConf(String(record.netns.dropFirst(NamedNamespaces.directory.count + 1)), network: network)
        }
        return true
    }

    /// The recorded attachments of namespace `nameOrPath`.
    public static func of(namespace nameOrPath: String) -> [Record] {
        let path = nameOrPath.hasPrefix("/") ? nameOrPath : NamedNamespaces.path(nameOrPath)
        return list().filter { $0.netns == path }
    }

    /// Forgets an attachment without running its plugins: its record and
    /// its cached result go (for a lab whose networks were cleared at once by GC).
    public static func forget(_ record: Record) {
        guard let list = try? NetworkList.load(name: record.network, directory: record.cniConfDirectory) else {
            _ = try? store().remove(record.fileName)
            return
        }
        PluginChain(list: list, searchPath: record.cniPath)
            .removeCachedResult(PluginChain.Attachment(containerID: record.containerID, netns: record.netns, ifname: record.ifname))
        _ = try? store().remove(record.fileName)
    }

    /// CHECK of the chain with the cached result.
    public static func check(network: String, netns: String, ifname: String = "eth0") throws(ClientError) {
        let record = try find(network: network, netns: netns, ifname: ifname)
        let list = try NetworkList.load(name: network, directory: record.cniConfDirectory)
        try PluginChain(list: list, searchPath: record.cniPath)
            .check(PluginChain.Attachment(containerID: record.containerID, netns: record.netns, ifname: ifname))
    }

    /// STATUS of the network's plugins.
    public static func status(network: String, cniConfDirectory: String, cniPath: [String]) throws(ClientError) {
        try PluginChain(list: try NetworkList.load(name: network, directory: cniConfDirectory), searchPath: cniPath).status()
    }

    /// GC of the network's plugins, keeping the recorded attachments of that
    /// network and `alsoValid` (the runtime's running containers on it).
    public static func gc(network: String, cniConfDirectory: String, cniPath: [String],
                          alsoValid: [(containerID: String, ifname: String)] = []) throws(ClientError) {
        let list = try NetworkList.load(name: network, directory: cniConfDirectory)
        let valid = self.list().filter { $0.network == network }.map { (containerID: $0.containerID, ifname: $0.ifname) }
        try PluginChain(list: list, searchPath: cniPath).gc(valid: valid + alsoValid)
    }

    /// Every recorded attachment.
    public static func list() -> [Record] {
        guard let dir = try? DirectoryHandle(path: directory, create: false), let names = try? dir.names() else { return [] }
        return names.sorted().compactMap { name in
            guard let bytes = (try? dir.read(name)) ?? nil, let json = try? JSON.parse(bytes) else { return nil }
            return Record(json: json)
        }
    }
}
