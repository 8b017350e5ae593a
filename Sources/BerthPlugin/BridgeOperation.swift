import BerthEndpoints
import BerthNames
import BerthEnforcement
import BerthCNI
import BerthCNIPlugin
import BerthFirewall
import BerthNetlink
import BerthSystem
import BerthNet

/// One invocation of the `berth` plugin for one container: ADD, DEL, CHECK,
/// GC, STATUS (each in a file of its own, `BridgeOperation+ADD.swift` ...).
///
/// Everything runs synchronously on the main thread. The container's
/// namespace is entered only for the instant a netlink socket is opened in it
/// (`RouteSocket.opened(in:)`) and to set the interface's sysctls; all other
/// work goes through that socket.
///
/// ADD, CHECK and DEL of one attachment (network, container, interface) run
/// one at a time: each holds the attachment's lock (`attachmentLock`) from
/// before it touches anything until its reply is delivered, and a delegated
/// IPAM plugin inherits it, so the lock outlives a killed `berth` until that
/// plugin is done.
///
/// Layers throw their own errors (`NetlinkError`, `FirewallError`,
/// `SystemError`, ...); `CNIError(pluginError:)` turns them into the reply.
struct BridgeOperation {
    let config: BridgeConfig
    let env: CNIEnvironment
    let ipam: IPAMBackend?
    let rules: AttachmentRules
    let attachment: CNIAttachmentKey
    /// The pod's namespace, name and labels (ADD only).
    let identity: PodIdentity?
    /// The attachment's DNS names on a network with `names` (ADD only).
    let requestedNames: [String]
    /// The network's names on this node, when it has `names`.
    var networkNames: NetworkNames? {
        config.names.map { NetworkNames(network: config.network.name, bridge: config.bridge, runDirectory: config.runDirectory, config: $0) }
    }
    /// Where ADD records the pod for policy, DEL and GC forget it.
    var endpoints: EndpointStore { EndpointStore(directory: config.runDirectory + "/endpoints") }
    var policyState: PolicyStateStore { PolicyStateStore(directory: config.runDirectory + "/policy") }
    /// Held for ADD, CHECK and DEL; released by `finish()`.
    let attachmentLock: LockFile?

    /// The index of the container interface among Berth's own `interfaces`.
    static let containerInterfaceIndex = 2

    /// Ports a Linux bridge can have (port numbers are 10 bits, 0 unused).
    static let maximumPorts = 1023

    /// How long an operation waits for another one on the same attachment.
    static let lockTimeout: Double = 60

    init(config: BridgeConfig, invocation: PluginInvocation) throws {
        env = invocation.env
        let attachment = CNIAttachmentKey(network: config.network.name, containerID: env.containerID, ifname: env.ifname)
        self.attachment = attachment
        rules = AttachmentRules(attachment)
        // Only ADD records who the pod is; checked before anything is touched.
        identity = env.command == .add
            ? try PodIdentity.read(top: invocation.reader, cniArgs: env.args, containerID: env.containerID) : nil
        requestedNames = env.command == .add && config.names != nil
            ? try RequestedNames.read(top: invocation.reader, cniArgs: env.args, network: config.network.name) : []
        var delegate: DelegatedPlugin?
        if let type = config.network.ipamType, type != InProcessIPAM.type {
            // Resolved first, so a missing plugin is refused before anything is touched.
            delegate = try DelegatedPlugin(type: type, searchPath: env.path, environment: invocation.processEnvironment,
                                           stdin: invocation.input)
        }
        let env = invocation.env
        let lock = try [.add, .check, .del].contains(env.command)
            ? LockFile(name: attachment.fileName,
                       timeout: BridgeOperation.lockTimeout)
            : nil
        attachmentLock = lock
        switch config.network.ipamType {
        case nil:
            ipam = nil
        case InProcessIPAM.type?:
            ipam = try InProcessIPAM(invocation: invocation)
        case .some:
            ipam = delegate.map { DelegatedIPAM(plugin: $0, lock: lock) }
        }
        // A cluster node's pods take the MTU its agent computed for the
        // cluster's mode (VXLAN's 50 bytes less) unless the config says one.
        var effective = config
        if effective.mtu == nil { effective.mtu = ipam?.linkMTU }
        self.config = effective
    }

    /// Releases the attachment's lock: call once the reply is delivered.
    func finish() {
        attachmentLock?.release()
    }

    var hasFirewallRules: Bool { config.ipMasq || config.macSpoofCheck }


    /// Opens CNI_NETNS. Missing or not a network namespace is an error 4 on
    /// ADD and CHECK; on DEL it means there is nothing left to remove (nil).
    /// The host's own namespace is refused: a plugin must not turn the host
    /// into a container, nor delete the host's interfaces on DEL.
    func openNamespace(required: Bool) throws -> NetworkNamespace? {
        if env.netns.isEmpty { return nil }
        let netns: NetworkNamespace
        do {
            netns = try NetworkNamespace(path: env.netns)
        } catch {
            switch error {
            case .missing, .notANetworkNamespace:
                if !required { return nil }
                throw CNIError(.invalidEnvironment, "CNI_NETNS: \(error)")
            case .system(let e):
                throw e
            }
        }
        if try netns.isCurrentThreadNamespace() {
            throw CNIError(.invalidEnvironment, "CNI_NETNS: \(env.netns) is the plugin's own (host) network namespace")
        }
        return netns
    }

    /// CNI_NETNS for ADD and CHECK, where the environment check made it required.
    func requiredNamespace() throws -> NetworkNamespace {
        guard let netns = try openNamespace(required: true) else {
            throw CNIError(.invalidEnvironment, "CNI_NETNS is not set")
        }
        return netns
    }
}
