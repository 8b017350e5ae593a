import BerthCNI
import BerthCNIPlugin
import BerthSystem
import BerthJSON

/// Another CNI plugin run on Berth's behalf (an IPAM plugin): given the
/// same stdin and environment as `berth` was, its failures passed on as
/// CNI errors (`PluginRunError.cniError`).
struct DelegatedPlugin {
    let executor: PluginExecutor
    let environment: [String: String]
    let stdin: [UInt8]

    var type: String { executor.type }

    /// Finds `type` on `searchPath`; a missing plugin is an error 7 naming the path searched.
    init(type: String, searchPath: [String], environment: [String: String], stdin: [UInt8]) throws(CNIError) {
        do {
            executor = try PluginExecutor(type: type, searchPath: searchPath)
        } catch {
            throw error.cniError
        }
        self.environment = environment
        self.stdin = stdin
    }

    /// Runs `command`; returns the parsed stdout (nil when it printed nothing).
    /// `inherit` and `outliveCaller` as for `runExecutable`.
    func run(_ command: CNICommand, inherit: OwnedDescriptor? = nil, outliveCaller: Bool = false) throws(CNIError) -> JSON? {
        do {
            return try executor.run(command, stdin: stdin, environment: environment, inherit: inherit, outliveCaller: outliveCaller)
        } catch {
            throw error.cniError
        }
    }
}
