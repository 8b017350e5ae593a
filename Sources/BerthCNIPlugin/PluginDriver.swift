import BerthJSON
import BerthCNI

/// What one invocation of a plugin prints and how it exits.
public struct PluginReply: Equatable, Sendable {
    public var status: Int32
    /// The JSON text for stdout (a result, an error, or nothing).
    public var stdout: String
}

/// One invocation as a plugin's handler sees it, after the common checks.
public struct PluginInvocation {
    public var env: CNIEnvironment
    public var network: NetworkConfig
    public var reader: FieldReader
    /// stdin as received, for delegating to another plugin.
    public var input: [UInt8]
    /// The whole process environment, for delegating to another plugin.
    public var processEnvironment: [String: String]
    /// Writes text to the runtime (stdout); false when it could not be
    /// written in full (stdout closed, a broken pipe).
    public var deliver: (String) -> Bool

    /// Hands `result` to the runtime. A handler that must undo its work when
    /// the runtime never gets the result (ADD) delivers it itself, then
    /// returns nil; when this throws, nothing reached the runtime.
    public func deliver(_ result: JSON) throws(CNIError) {
        if !deliver(result.serialized(pretty: true) + "\n") {
            throw CNIError(.ioFailure, "the result could not be written to stdout")
        }
    }
}

/// The part of the CNI protocol every plugin shares: read stdin (first, so
/// that every error is printed in the config's version), check the
/// environment (error 4), answer VERSION, decode the config (6, then 1 for
/// the version, then 7), refuse commands the config's version does not have
/// (1), then let `handle` do the command and deliver its result.
public enum PluginDriver {
    /// Runs one invocation; what it prints goes to `deliver` (the process's
    /// stdout). Returns the exit status: 0 only when the command succeeded
    /// and its result, if any, was delivered.
    public static func run(environment: [String: String],
                           readInput: () throws -> [UInt8],
                           deliver: @escaping (String) -> Bool,
                           handle: (PluginInvocation) throws(CNIError) -> JSON?) -> Int32 {
        var input: [UInt8] = []
        do throws(CNIError) {
            do {
                input = try readInput()
            } catch {
                throw CNIError(.ioFailure, "reading the network config from stdin: \(error)")
            }
            let env = try CNIEnvironment(environment)
            let invocation: PluginInvocation
            if env.command == .version {
                let version = input.isEmpty ? CNIVersion.latest : NetworkConfig.replyVersion(for: input)
                return deliver(CNIVersion.versionInfo(answering: version).serialized(pretty: true) + "\n") ? 0 : 1
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
            invocation = PluginInvocation(env: env, network: network, reader: reader, input: input,
                                          processEnvironment: environment, deliver: deliver)
            if let result = try handle(invocation) { try invocation.deliver(result) }
            return 0
        } catch {
            let version = NetworkConfig.replyVersion(for: input)
            _ = deliver(error.json(cniVersion: version.description).serialized(pretty: true) + "\n")
            return 1
        }
    }

    /// Runs one invocation and returns what it printed (for tests and for
    /// callers in the same process).
    public static func run(environment: [String: String],
                           readInput: () throws -> [UInt8],
                           handle: (PluginInvocation) throws(CNIError) -> JSON?) -> PluginReply {
        let output = OutputCollector()
        let status = run(environment: environment, readInput: readInput,
                         deliver: { output.text += $0; return true }, handle: handle)
        return PluginReply(status: status, stdout: output.text)
    }
}

/// Collects what an in-process invocation prints.
private final class OutputCollector {
    var text = ""
}
