#if canImport(Glibc)
import Glibc
#endif
import BerthCNI
import BerthCNIPlugin
import BerthSystem
import BerthJSON
import BerthNet

/// A network configuration list (`.conflist`), or a single `.conf` taken as a list of one.
public struct NetworkList: Sendable {
    public var name: String
    public var cniVersion: String
    public var plugins: [JSONObject]
    /// The file it came from.
    public var path: String

    public static let defaultDirectory = "/etc/cni/net.d"

    /// Finds the network called `name` among the *.conflist, *.conf and *.json
    /// files of `directory` (in name order, as libcni does).
    public static func load(name: String, directory: String) throws(ClientError) -> NetworkList {
        guard let dir = try? DirectoryHandle(path: directory, create: false), let files = try? dir.names() else {
            throw ClientError("unknown network \(name): cannot read the config directory \(directory)")
        }
        for file in files.sorted() where file.hasSuffix(".conflist") || file.hasSuffix(".conf") || file.hasSuffix(".json") {
            guard let bytes = (try? dir.read(file)) ?? nil, let json = try? JSON.parse(bytes),
                  let object = json.objectValue, object["name"]?.stringValue == name else { continue }
            return try NetworkList(object, path: "\(directory)/\(file)")
        }
        throw ClientError("unknown network \(name): no config in \(directory) has \"name\": \"\(name)\"")
    }

    public init(_ object: JSONObject, path: String) throws(ClientError) {
        self.path = path
        name = object["name"]?.stringValue ?? ""
        cniVersion = object["cniVersion"]?.stringValue ?? CNIVersion.implicit.description
        if let list = object["plugins"]?.arrayValue {
            plugins = list.compactMap(\.objectValue)
            if plugins.count != list.count { throw ClientError("\(path): every entry of \"plugins\" must be an object") }
        } else {
            plugins = [object]  // a single-plugin .conf
        }
        if plugins.isEmpty { throw ClientError("\(path): \"plugins\" is empty") }
        for (i, p) in plugins.enumerated() {
            guard let type = p["type"]?.stringValue, !type.isEmpty, !type.contains("/") else {
                throw ClientError("\(path): plugin \(i) has no valid \"type\"")
            }
        }
    }
}

/// Runs a network list's plugins the way libcni does: each gets the list's
/// `name` and `cniVersion`, the `runtimeConfig` of the capabilities it
/// declares, and the previous result as `prevResult`; the final ADD result is
/// cached, and DEL and CHECK run with it (DEL in reverse order).
public struct PluginChain: Sendable {
    public let list: NetworkList
    public let searchPath: [String]
    public let cacheDirectory: String

    public static let defaultCacheDirectory = "/var/lib/berth/results"
    public static let defaultSearchPath = ["/opt/cni/bin", "/usr/lib/cni"]

    public init(list: NetworkList, searchPath: [String], cacheDirectory: String = PluginChain.defaultCacheDirectory) {
        self.list = list
        self.searchPath = searchPath
        self.cacheDirectory = cacheDirectory
    }

    /// One attachment: which container, where, under which name.
    public struct Attachment: Sendable {
        public var containerID: String
        public var netns: String
        public var ifname: String
        public var runtimeConfig: JSONObject
        /// Given to every plugin as `args.cni` (merged over the config's own):
        /// the pod's `namespace` and `labels`, as libcni passes `args` through.
        public var cniArgs: JSONObject

        public init(containerID: String, netns: String, ifname: String, runtimeConfig: JSONObject = [:], cniArgs: JSONObject = [:]) {
            self.containerID = containerID
            self.netns = netns
            self.ifname = ifname
            self.runtimeConfig = runtimeConfig
            self.cniArgs = cniArgs
        }
    }

    /// The cached result's file: `NETWORK:ID:IFNAME` (':' is in none of the
    /// three, so no two attachments share it), shortened past 255 bytes.
    func cacheFile(_ a: Attachment) -> String {
        CNIAttachmentKey(network: list.name, containerID: a.containerID, ifname: a.ifname).fileName
    }

    /// ADD through every plugin; caches and returns the final result. If a
    /// plugin fails, the ones before it are deleted again (in reverse).
    @discardableResult
    public func add(_ a: Attachment) throws(ClientError) -> JSON {
        var previous: JSON?
        for (i, plugin) in list.plugins.enumerated() {
            do {
                previous = try run(.add, plugin, a, prevResult: previous)
            } catch {
                for done in list.plugins[..<i].reversed() { _ = try? run(.del, done, a, prevResult: previous) }
                throw error
            }
        }
        let result = previous ?? .object([:])
        do {
            let dir = try DirectoryHandle(path: cacheDirectory, create: true)
            let scratch = try dir.writeScratch(Array(result.serialized().utf8))
            try dir.publish(scratch, as: cacheFile(a), in: dir)
        } catch {
            throw ClientError("cannot cache the result of network \(list.name): \(error)")
        }
        return result
    }

    /// Forgets an attachment's cached result without running any plugin.
    public func removeCachedResult(_ a: Attachment) {
        if let dir = try? DirectoryHandle(path: cacheDirectory, create: false) { _ = try? dir.remove(cacheFile(a)) }
    }

    /// The cached result of an attachment, if any.
    public func cachedResult(_ a: Attachment) -> JSON? {
        guard let dir = try? DirectoryHandle(path: cacheDirectory, create: false),
              let bytes = (try? dir.read(cacheFile(a))) ?? nil else { return nil }
        return try? JSON.parse(bytes)
    }

    /// DEL through every plugin in reverse, with the cached result; keeps
    /// going past a failing plugin and reports the first failure.
    public func del(_ a: Attachment) throws(ClientError) {
        let cached = cachedResult(a)
        var firstError: ClientError?
        for plugin in list.plugins.reversed() {
            do { _ = try run(.del, plugin, a, prevResult: cached) } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
        if let dir = try? DirectoryHandle(path: cacheDirectory, create: false) { _ = try? dir.remove(cacheFile(a)) }
    }

    /// CHECK through every plugin with the cached result.
    public func check(_ a: Attachment) throws(ClientError) {
        guard let cached = cachedResult(a) else {
            throw ClientError("network \(list.name) has no cached result for \(a.containerID) \(a.ifname)")
        }
        for plugin in list.plugins { _ = try run(.check, plugin, a, prevResult: cached) }
    }

    /// STATUS of every plugin (cniVersion 1.1.0 and later): the first that is not ready fails.
    public func status() throws(ClientError) {
        guard let version = CNIVersion(list.cniVersion), version.supportsStatusAndGC else {
            throw ClientError("network \(list.name): STATUS needs cniVersion 1.1.0 or later (it has \(list.cniVersion))")
        }
        let none = Attachment(containerID: "", netns: "", ifname: "")
        for plugin in list.plugins { _ = try run(.status, plugin, none, prevResult: nil) }
    }

    /// GC of every plugin (cniVersion 1.1.0 and later): everything not in `valid` is released.
    public func gc(valid: [(containerID: String, ifname: String)]) throws(ClientError) {
        guard let version = CNIVersion(list.cniVersion), version.supportsStatusAndGC else {
            throw ClientError("network \(list.name): GC needs cniVersion 1.1.0 or later (it has \(list.cniVersion))")
        }
        let none = Attachment(containerID: "", netns: "", ifname: "")
        let attachments = JSON.array(valid.map { .object(["containerID": .string($0.containerID), "ifname": .string($0.ifname)]) })
        var firstError: ClientError?
        for plugin in list.plugins {
            var withList = plugin
            withList["cni.dev/valid-attachments"] = attachments
            do { _ = try run(.gc, withList, none, prevResult: nil) } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
    }

    func run(_ command: CNICommand, _ plugin: JSONObject, _ a: Attachment, prevResult: JSON?) throws(ClientError) -> JSON? {
        var config = plugin
        config["name"] = .string(list.name)
        config["cniVersion"] = .string(list.cniVersion)
        var runtime = JSONObject()
        for (capability, enabled) in plugin["capabilities"]?.objectValue?.entries ?? [] where enabled == .bool(true) {
            if let value = a.runtimeConfig[capability] { runtime[capability] = value }
        }
        if !runtime.isEmpty { config["runtimeConfig"] = .object(runtime) }
        if let prevResult { config["prevResult"] = prevResult }
        if !a.cniArgs.isEmpty {
            var args = config["args"]?.objectValue ?? [:]
            var cni = args["cni"]?.objectValue ?? [:]
            for (k, v) in a.cniArgs.entries { cni[k] = v }
            args["cni"] = .object(cni)
            config["args"] = .object(args)
        }
        let environment = [
            "CNI_CONTAINERID": a.containerID, "CNI_NETNS": a.netns,
            "CNI_IFNAME": a.ifname, "CNI_PATH": searchPath.joined(separator: ":"),
            "PATH": defaultExecutablePath,
        ]
        do {
            let executor = try PluginExecutor(type: plugin["type"]?.stringValue ?? "", searchPath: searchPath)
            return try executor.run(command, stdin: Array(JSON.object(config).serialized().utf8), environment: environment)
        } catch {
            throw ClientError("network \(list.name): \(error)")
        }
    }
}
