/// What one invocation of a plugin prints and how it exits.
public struct PluginReply: Equatable, Sendable {
    public var status: Int32
    /// The JSON text for stdout (a result, an error, or nothing).
    public var stdout: String

    public init(status: Int32, stdout: String) {
        self.status = status
        self.stdout = stdout
    }
}

/// One invocation as a plugin's handler sees it, after the common checks.
public struct PluginInvocation: Sendable {
    public var env: CNIEnvironment
    public var network: NetworkConfig
    public var reader: FieldReader
    /// stdin as received, for delegating to another plugin.
    public var input: [UInt8]
    /// The whole process environment, for delegating to another plugin.
    public var processEnvironment: [String: String]
}

/// The part of the CNI protocol every plugin shares: read stdin (first, so
/// that every error is printed in the config's version), check the
/// environment (error 4), answer VERSION, decode the config (6, then 1 for
/// the version, then 7), refuse commands the config's version does not have
/// (1), then let `handle` do the command and print its result.
public enum PluginDriver {
    public static func run(environment: [String: String],
                           readInput: () throws -> [UInt8],
                           handle: (PluginInvocation) throws(CNIError) -> JSON?) -> PluginReply {
        var input: [UInt8] = []
        do throws(CNIError) {
            do {
                input = try readInput()
            } catch {
                throw CNIError(.ioFailure, "reading the network config from stdin: \(error)")
            }
            let env = try CNIEnvironment(environment)
            if env.command == .version {
                let version = input.isEmpty ? CNIVersion.latest : NetworkConfig.replyVersion(for: input)
                return PluginReply(status: 0, stdout: CNIVersion.versionInfo(answering: version).serialized(pretty: true) + "\n")
            }
            let (network, reader) = try NetworkConfig.decode(input)
            let version = network.cniVersion
            switch env.command {
            case .check where !version.supportsCheck:
                throw CNIError(.incompatibleVersion, "CHECK is not part of cniVersion \(version) (it came with 0.4.0)")
            case .status where !version.supportsStatusAndGC, .gc where !version.supportsStatusAndGC:
                throw CNIError(.incompatibleVersion, "\(env.command.rawValue) is not part of cniVersion \(version) (it came with 1.1.0)")
            default:
                break
            }
            let invocation = PluginInvocation(env: env, network: network, reader: reader, input: input,
                                              processEnvironment: environment)
            guard let result = try handle(invocation) else { return PluginReply(status: 0, stdout: "") }
            return PluginReply(status: 0, stdout: result.serialized(pretty: true) + "\n")
        } catch {
            let version = NetworkConfig.replyVersion(for: input)
            return PluginReply(status: 1, stdout: error.json(cniVersion: version.description).serialized(pretty: true) + "\n")
        }
    }
}

extension NetworkConfig {
    /// The attachments GC must keep: `cni.dev/valid-attachments` (or the
    /// older `cni.dev/attachments`), each `{containerID, ifname}`.
    public static func validAttachments(_ r: FieldReader) throws(CNIError) -> [(containerID: String, ifname: String)] {
        let key = r.has("cni.dev/valid-attachments") ? "cni.dev/valid-attachments" : "cni.dev/attachments"
        guard let items = try r.objects(key) else {
            throw r.error("cni.dev/valid-attachments", "is required for GC")
        }
        var out: [(containerID: String, ifname: String)] = []
        for item in items {
            out.append((try item.requiredString("containerID"), try item.requiredString("ifname")))
        }
        return out
    }
}
