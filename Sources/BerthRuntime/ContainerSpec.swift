import BerthCNI
import BerthJSON
import BerthSystem
import BerthCNIClient

/// What to run.
public struct ContainerSpec: Sendable {
    public var name: String
    public var command: [String]
    public var environment: [String]
    public var hostname: String?
    public var limits: ResourceLimits
    /// A small init as PID 1 (the workload is PID 2); false makes the workload PID 1.
    public var useInit: Bool
    /// CNI networks to attach, as eth0, eth1, ... (names of conflists).
    public var networks: [String]
    /// Where the conflists are (default /etc/cni/net.d).
    public var cniConfDirectory: String
    /// Where the plugins are (CNI_PATH).
    public var cniPath: [String]
    /// A root file system to pivot_root into; nil keeps the host's root.
    public var rootfs: String?
    /// Show the container's limits in /proc through lxcfs.
    public var lxcfs: Bool
    /// Send the workload's output to `output.log` in the state directory (detached runs).
    public var logOutput = false
    /// Who the container is for network policy: its namespace and labels,
    /// given to its networks' plugins as `args.cni` (nil, empty: not given).
    public var podNamespace: String?
    public var podLabels: [String: String] = [:]

    /// `args.cni` for the plugins: the container's name (its name on a
    /// network with names, when it can be a DNS name) and the namespace and labels given.
    var cniArgs: JSONObject {
        var args = JSONObject()
        if KubernetesNames.nameProblem(KubernetesNames.folded(name), subdomain: true) == nil { args["podName"] = .string(name) }
        if let podNamespace { args["namespace"] = .string(podNamespace) }
        if !podLabels.isEmpty {
            var labels = JSONObject()
            for (k, v) in podLabels.sorted(by: { $0.key < $1.key }) { labels[k] = .string(v) }
            args["labels"] = .object(labels)
        }
        return args
    }
    /// A user namespace in which the container's root is host uid and gid
    /// `userNamespaceBase` (and 65,535 more ids above it).
    public var userNamespace = false
    public static let userNamespaceBase = 100_000
    public static let userNamespaceSize = 65_536

    public static let lxcfsDirectory = "/var/lib/lxcfs"

    /// The longest container name: it names the state directory, the
    /// cgroups and the CNI container ID.
    public static let maximumNameLength = 128
    /// The kernel's limit on a host name (HOST_NAME_MAX).
    public static let maximumHostnameLength = 64

    /// Why `name` cannot name a container, or nil.
    public static func nameProblem(_ name: String) -> FieldProblem? {
        if let problem = CNIEnvironment.containerIDProblem(name) { return FieldProblem("name", "\"\(name)\" is invalid: \(problem)") }
        if name.utf8.count > maximumNameLength {
            return FieldProblem("name", "\"\(name.prefix(20))...\" is \(name.utf8.count) bytes long: at most \(maximumNameLength)")
        }
        return nil
    }

    /// Why `hostname` cannot be a host name, or nil.
    public static func hostnameProblem(_ hostname: String) -> FieldProblem? {
        if hostname.isEmpty { return FieldProblem("hostname", "must not be empty") }
        if hostname.utf8.count > maximumHostnameLength {
            return FieldProblem("hostname", "is \(hostname.utf8.count) bytes long: the kernel's limit is \(maximumHostnameLength)")
        }
        return nil
    }

    /// The host name inside: `hostname`, or the name cut to the kernel's limit.
    public var effectiveHostname: String {
        hostname ?? String(decoding: Array(name.utf8.prefix(ContainerSpec.maximumHostnameLength)), as: UTF8.self)
    }

    public init(name: String, command: [String], environment: [String] = [], hostname: String? = nil,
                limits: ResourceLimits = ResourceLimits(), useInit: Bool = true, networks: [String] = [],
                cniConfDirectory: String = NetworkList.defaultDirectory, cniPath: [String] = PluginChain.defaultSearchPath,
                rootfs: String? = nil, lxcfs: Bool = false) {
        self.rootfs = rootfs
        self.lxcfs = lxcfs
        self.name = name
        self.command = command
        self.environment = environment
        self.hostname = hostname
        self.limits = limits
        self.useInit = useInit
        self.networks = networks
        self.cniConfDirectory = cniConfDirectory
        self.cniPath = cniPath
    }
}
