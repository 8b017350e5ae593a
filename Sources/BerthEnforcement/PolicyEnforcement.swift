#if canImport(Glibc)
import Glibc
#endif
import BerthEndpoints
import BerthFirewall
import BerthJSON
import BerthNet
import BerthPolicy
import BerthSystem

/// The policies in force on this node and how drops are logged.
public struct AppliedPolicies: Equatable, Sendable {
    public var policies: PolicySet
    /// The NFLOG group drops are logged to; nil: not logged.
    public var logGroup: Int?

    public init(policies: PolicySet, logGroup: Int? = nil) {
        self.policies = policies
        self.logGroup = logGroup
    }
}

/// A failed policy operation: what failed and where (the state file, the
/// kernel setting, the firewall).
public struct EnforcementError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where the policies in force are kept: /run/berth/policy/policies.json
/// (a `v1` List, as `PolicyDocuments` reads) and `log-group`. Nothing
/// there: no policy is in force. Gone at reboot, with the kernel's tables.
public struct PolicyStateStore: Sendable {
    public static let defaultDirectory = "/run/berth/policy"
    public let directory: String

    public init(directory: String = PolicyStateStore.defaultDirectory) { self.directory = directory }

    /// The lock that orders changes of this directory's policies and its pods'
    /// elements ("policy" for the node's own; one per directory of a simulated node).
    public var lockName: String {
        directory == PolicyStateStore.defaultDirectory ? "policy" : "policy-" + String(SHA256.hex(Array(directory.utf8)).prefix(16))
    }

    static let policiesFile = "policies.json"
    static let logFile = "log-group"
    static let indexFile = "groups.json"

    /// Whether policies may be in force (their index is there): one access(2), no read.
    public var mayBeInForce: Bool {
        access("\(directory)/\(PolicyStateStore.indexFile)", F_OK) == 0
    }

    /// The groups of the policies in force (what ADD and DEL need); nil when
    /// no policy is in force. Read from the index `write` keeps beside the
    /// policies, or, when it is missing, from the policies.
    public func groupIndex() throws(EnforcementError) -> GroupIndex? {
        guard let dir = try? DirectoryHandle(path: directory, create: false) else { return nil }
        let bytes: [UInt8]?
        do { bytes = try dir.read(PolicyStateStore.indexFile) } catch { throw EnforcementError("\(error)") }
        guard let bytes else { return try read().map { GroupIndex($0.policies) } }
        guard let json = try? JSON.parse(bytes), let index = GroupIndex(json: json) else {
            throw EnforcementError("\(directory)/\(PolicyStateStore.indexFile) is damaged: apply the policies again")
        }
        return index
    }

    /// What is in force; nil when nothing is.
    public func read() throws(EnforcementError) -> AppliedPolicies? {
        let dir: DirectoryHandle
        do {
            dir = try DirectoryHandle(path: directory, create: false)
        } catch {
            if error.errno == ENOENT { return nil }
            throw EnforcementError("\(directory): \(error)")
        }
        let bytes: [UInt8]?
        do { bytes = try dir.read(PolicyStateStore.policiesFile) } catch { throw EnforcementError("\(error)") }
        guard let bytes else { return nil }
        let set: PolicySet
        do {
            set = try PolicyDocuments.read(json: String(decoding: bytes, as: UTF8.self))
        } catch {
            throw EnforcementError("\(directory)/\(PolicyStateStore.policiesFile) is damaged (\(error)): apply the policies again")
        }
        let log = (try? dir.read(PolicyStateStore.logFile)).flatMap { $0 }.flatMap { Int(String(decoding: $0, as: UTF8.self)) }
        return AppliedPolicies(policies: set, logGroup: log)
    }

    /// Records `applied` (each file replaced atomically).
    public func write(_ applied: AppliedPolicies) throws(EnforcementError) {
        do {
            try DirectoryHandle.makeDirectories(directory)
            let dir = try DirectoryHandle(path: directory, create: false)
            let log = try dir.writeScratch(Array((applied.logGroup.map(String.init) ?? "").utf8))
            try dir.publish(log, as: PolicyStateStore.logFile, in: dir)
            let scratch = try dir.writeScratch(Array(applied.policies.json.serialized().utf8))
            try dir.publish(scratch, as: PolicyStateStore.policiesFile, in: dir)
            let index = try dir.writeScratch(Array(GroupIndex(applied.policies).json.serialized().utf8))
            try dir.publish(index, as: PolicyStateStore.indexFile, in: dir)
        } catch {
            throw EnforcementError("\(directory): \(error)")
        }
    }

    /// Forgets everything: no policy in force.
    public func clear() throws(EnforcementError) {
        guard let dir = try? DirectoryHandle(path: directory, create: false) else { return }
        do {
            _ = try dir.remove(PolicyStateStore.indexFile)
            _ = try dir.remove(PolicyStateStore.policiesFile)
            _ = try dir.remove(PolicyStateStore.logFile)
        } catch {
            throw EnforcementError("\(directory): \(error)")
        }
    }
}

extension Endpoint {
    /// The pod as policy sees it.
    public var pod: PolicyPod {
        PolicyPod(name: identity.name, namespace: identity.namespace, labels: identity.labels, addresses: addresses)
    }
}

/// What `apply` did, for the CLI and the agent's log.
public struct ApplyOutcome: Sendable {
    public var policies: Int
    public var groups: Int
    public var chains: Int
    public var rules: Int
    /// Whether the table was built from nothing (no usable state before).
    public var rebuilt: Bool
    public var commands: Int
}

/// Policy on this node: `apply` puts a set of policies in force, `admit`
/// and `release` keep the sets in step with pods as they come and go (the
/// plugin's ADD, DEL and GC). A lock (`policy`: exclusive for apply, shared
/// for pods) keeps a pod's elements and a change of policies from crossing.
public enum PolicyEnforcement {
    public static let lockTimeout = 30.0

    /// Runs `body` with the groups (ids) of the policies in force that hold
    /// `pod`, under the shared lock; not at all when no policy is in force
    /// (one failed open) or none holds it.
    static func withGroups(of pod: PolicyPod, state: PolicyStateStore, _ body: ([String]) throws -> Void) throws -> [String] {
        guard (try? DirectoryHandle(path: state.directory, create: false)) != nil else { return [] }
        let lock = try LockFile(name: state.lockName, shared: true, timeout: lockTimeout)
        defer { lock.release() }
        guard let index = try state.groupIndex() else { return [] }
        let groups = index.groups(of: pod)
        if !groups.isEmpty { try body(groups) }
        return groups
    }

    /// ADD: puts the pod's addresses into the sets of the groups that hold
    /// it, before its interface is up. Returns the groups it joined.
    @discardableResult
    public static func admit(_ pod: PolicyPod, state: PolicyStateStore = PolicyStateStore()) throws -> [String] {
        try withGroups(of: pod, state: state) { groups in try PolicyTable.admit(pod.addresses, to: groups) }
    }

    /// CHECK: the groups that hold `pod` whose sets lack one of its addresses
    /// (as "gID4 10.0.0.5"); empty when all are there or no policy is in force.
    public static func missing(_ pod: PolicyPod, state: PolicyStateStore = PolicyStateStore()) throws -> [String] {
        var out: [String] = []
        _ = try withGroups(of: pod, state: state) { groups in
            for group in groups {
                for family in [IPAddress.Family.v4, .v6] {
                    let wanted = pod.addresses.filter { $0.family == family }
                    guard !wanted.isEmpty else { continue }
                    let present = Set(try PolicyTable.members(of: group, family))
                    for a in wanted where !present.contains(a.description) { out.append("\(PolicyTable.setName(group, family)) \(a)") }
                }
            }
        }
        return out
    }

    /// DEL and GC: takes the pod's addresses out of its groups' sets
    /// (through `session` when given: see `NFTSession`).
    public static func release(_ pod: PolicyPod, state: PolicyStateStore = PolicyStateStore(), session: NFTSession? = nil) throws {
        _ = try withGroups(of: pod, state: state) { groups in try PolicyTable.release(pod.addresses, from: groups, session: session) }
    }

    /// Puts `applied` in force in one transaction from what is in force
    /// now (or, when the kernel lost it, from nothing), with the sets filled
    /// from `pods()` (read under the lock: no ADD crosses it). No policy at
    /// all removes the table. Refused, naming the setting, when bridged
    /// traffic would bypass the rules.
    public static func apply(_ applied: AppliedPolicies, pods: () throws -> [PolicyPod],
                             state: PolicyStateStore = PolicyStateStore(),
                             setting: (String) -> String? = PolicyEnforcement.sysctl) throws -> ApplyOutcome {
        let lock = try LockFile(name: state.lockName, timeout: lockTimeout)
        defer { lock.release() }
        if applied.policies.policies.isEmpty {
            // No rule at all: no table. Namespaces alone are kept for later policies.
            try PolicyTable.remove()
            if applied.policies.namespaces.isEmpty { try state.clear() } else { try state.write(applied) }
            return ApplyOutcome(policies: 0, groups: 0, chains: 0, rules: 0, rebuilt: false, commands: 0)
        }
        if let problem = bridgedTrafficProblem(read: setting) {
            throw EnforcementError("policy is not enforced: \(problem)")
        }
        let old = try? state.read()
        let inPlace = old != nil ? try PolicyTable.isInPlace() : false
        let oldRules = (old != nil && inPlace) ? PolicyRuleset(old!.policies, logGroup: old!.logGroup) : nil
        let newRules = PolicyRuleset(applied.policies, logGroup: applied.logGroup)
        let members = applied.policies.members(of: newRules.groups, pods: try pods())
        var refill = Set<String>()
        if let old, old.policies.namespaces != applied.policies.namespaces {
            for g in newRules.groups { if case .matching = g.namespaces { refill.insert(g.id) } }
        }
        let t = PolicyTable.transaction(from: oldRules, to: newRules, members: members, refill: refill)
        try t.commit()
        try state.write(applied)
        return ApplyOutcome(policies: applied.policies.policies.count, groups: newRules.groups.count,
                            chains: newRules.chains.count, rules: newRules.chains.values.reduce(0) { $0 + $1.count },
                            rebuilt: oldRules == nil, commands: t.commands.count)
    }

    /// A kernel setting ("net.bridge.bridge-nf-call-iptables"); nil when absent.
    public static func sysctl(_ key: String) -> String? { try? Sysctl.read(key) }
}

