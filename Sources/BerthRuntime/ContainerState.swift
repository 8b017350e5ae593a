import BerthCNIClient
import BerthJSON

/// A container's recorded state (`/run/berth/containers/NAME/state.json`).
public struct ContainerState: Sendable {
    /// Where a container is in its life.
    public enum Status: String, Sendable {
        /// `run` is making it (state recorded before each step).
        case creating
        case running
        /// Frozen by `pause` (read from the cgroup, never recorded).
        case paused
        case exited
    }

    public var name: String
    public var pid: Int32
    public var status: Status
    public var exitCode: Int?
    public var command: [String]
    public var hostname: String
    public var limits: ResourceLimits
    public var cgroups: [String: String]
    public var oomKills: Int
    /// The attached networks: name, interface, addresses; cleared once DEL ran.
    public var networks: [NetworkAttachment]
    public var cniConfDirectory: String
    public var cniPath: [String]

    public struct NetworkAttachment: Sendable {
        public var network: String
        public var ifname: String
        public var addresses: [String]
    }

    public func json() -> JSON {
        var limitsJSON = JSONObject()
        if let m = limits.memory { limitsJSON["memory"] = .number(String(m)) }
        if let c = limits.cpus { limitsJSON["cpus"] = .number(String(c)) }
        if let s = limits.cpuShares { limitsJSON["cpuShares"] = .int(s) }
        if let p = limits.pids { limitsJSON["pids"] = .int(p) }
        if let c = limits.cpusetCpus { limitsJSON["cpusetCpus"] = .string(c) }
        var cgroupJSON = JSONObject()
        for (k, v) in cgroups.sorted(by: { $0.key < $1.key }) { cgroupJSON[k] = .string(v) }
        var o: JSONObject = [
            "name": .string(name), "pid": .int(Int(pid)), "status": .string(status.rawValue),
            "command": .array(command.map(JSON.string)), "hostname": .string(hostname),
            "limits": .object(limitsJSON), "cgroups": .object(cgroupJSON), "oomKills": .int(oomKills),
        ]
        if let exitCode { o["exitCode"] = .int(exitCode) }
        o["networks"] = .array(networks.map {
            .object(["network": .string($0.network), "ifname": .string($0.ifname), "addresses": .array($0.addresses.map(JSON.string))])
        })
        o["cniConfDirectory"] = .string(cniConfDirectory)
        o["cniPath"] = .array(cniPath.map(JSON.string))
        return .object(o)
    }

    init?(json: JSON) {
        guard let name = json["name"]?.stringValue, let pid = json["pid"]?.intValue,
              let status = json["status"]?.stringValue.flatMap(Status.init(rawValue:)) else { return nil }
        self.name = name
        self.pid = Int32(pid)
        self.status = status
        exitCode = json["exitCode"]?.intValue
        command = json["command"]?.arrayValue?.compactMap(\.stringValue) ?? []
        hostname = json["hostname"]?.stringValue ?? ""
        let l = json["limits"]
        limits = ResourceLimits(memory: l?["memory"].flatMap { if case .number(let n) = $0 { return UInt64(n) }; return nil },
                                cpus: l?["cpus"].flatMap { if case .number(let n) = $0 { return Double(n) }; return nil },
                                cpuShares: l?["cpuShares"]?.intValue, pids: l?["pids"]?.intValue,
                                cpusetCpus: l?["cpusetCpus"]?.stringValue)
        cgroups = [:]
        for (k, v) in json["cgroups"]?.objectValue?.entries ?? [] { cgroups[k] = v.stringValue }
        oomKills = json["oomKills"]?.intValue ?? 0
        networks = (json["networks"]?.arrayValue ?? []).compactMap { n in
            guard let network = n["network"]?.stringValue, let ifname = n["ifname"]?.stringValue else { return nil }
            return NetworkAttachment(network: network, ifname: ifname,
                                     addresses: n["addresses"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        }
        cniConfDirectory = json["cniConfDirectory"]?.stringValue ?? NetworkList.defaultDirectory
        cniPath = json["cniPath"]?.arrayValue?.compactMap(\.stringValue) ?? PluginChain.defaultSearchPath
    }

    init(spec: ContainerSpec, pid: Int32, cgroup: Cgroup) {
        name = spec.name
        self.pid = pid
        status = .running
        exitCode = nil
        command = spec.command
        hostname = spec.hostname ?? spec.name
        limits = spec.limits
        cgroups = cgroup.directories
        oomKills = 0
        networks = []
        cniConfDirectory = spec.cniConfDirectory
        cniPath = spec.cniPath
    }
}
