import AsyncHTTPClient
import BerthJSON
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// A failed etcd request, said in one line.
public struct EtcdError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One key of etcd with its metadata.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    public var createRevision: Int64
    public var modRevision: Int64
    public var lease: Int64

    public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.lease = lease
    }
}

/// A change seen by a watch: a key put (with its new value) or deleted (also by its lease expiring).
public struct EtcdEvent: Sendable, Equatable {
    public enum Kind: Sendable { case put, delete }
    public var kind: Kind
    public var keyValue: EtcdKeyValue

    public init(kind: Kind, keyValue: EtcdKeyValue) {
        self.kind = kind
        self.keyValue = keyValue
    }
}

/// etcd's v3 API through its JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
/// `/v3/lease/...`, `/v3/watch`), over AsyncHTTPClient, plain or over TLS
/// (swift-nio-ssl) with a client certificate, as an etcd user (an auth
/// token from `/v3/auth/authenticate`, sent in `Authorization`, renewed when
/// etcd says it is no longer valid). Keys and values are base64 in that
/// JSON, 64-bit integers are strings.
///
/// The TLS files are looked at again at most once a second (and at once on
/// `reloadTLS`): a certificate replaced on disk is used for the next
/// connection, without a restart; material that does not load (a key not
/// yet written beside its new certificate) leaves the last good one in use
/// and is logged.
public final class EtcdClient: Sendable {
    public let access: EtcdAccess
    public var endpoint: String { access.endpoint }
    let http: HTTPClient
    private let state: NIOLockedValueBox<ConnectionState>
    private let log: @Sendable (String) -> Void

    struct ConnectionState: @unchecked Sendable {
        var material: EtcdTLSMaterial?
        var lastCheck = Date()
        var refusedStamps: [FileStamp?]?
        /// The auth token; "" when etcd has authentication off.
        var token: String?
    }

    /// A client of etcd at `endpoint` ("http://ADDRESS:PORT"), no TLS files, no user.
    public convenience init(endpoint: String) {
        self.init(access: EtcdAccess(endpoint: endpoint), material: nil, log: { _ in })
    }

    /// A client as `access` says; its TLS files are read now (an unreadable
    /// or mismatched one is thrown, naming its flag or variable).
    public convenience init(access: EtcdAccess, log: @escaping @Sendable (String) -> Void = { _ in }) throws(EtcdAccessError) {
        try access.check()
        let material = access.usesTLS ? try EtcdTLSMaterial.load(access) : nil
        self.init(access: access, material: material, log: log)
    }

    private init(access: EtcdAccess, material: EtcdTLSMaterial?, log: @escaping @Sendable (String) -> Void) {
        self.access = access
        self.log = log
        var material = material
        if material == nil && access.usesTLS {
            material = EtcdTLSMaterial(configuration: .makeClientConfiguration(), stamps: [], summary: "the system's CA certificates")
        }
        state = NIOLockedValueBox(ConnectionState(material: material))
        // Berth retries with its own backoff and logs each failure: a failed
        // connection fails the request at once instead of waiting in the pool.
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(2)
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async {
        try? await http.shutdown()
    }

    // MARK: TLS material and the auth token

    /// Reads the TLS files again if they changed (or at once when `force`):
    /// the next connection uses them. Returns what was loaded, nil when
    /// nothing changed; throws (keeping the material in use) when they do not load.
    @discardableResult
    public func reloadTLS(force: Bool = false) throws(EtcdAccessError) -> String? {
        guard access.usesTLS, !EtcdTLSMaterial.files(access).isEmpty else { return nil }
        let stamps = EtcdTLSMaterial.stamps(access)
        let current = state.withLockedValue { s -> [FileStamp?]? in
            s.lastCheck = Date()
            return s.material?.stamps
        }
        guard force || stamps != current else { return nil }
        do {
            let material = try EtcdTLSMaterial.load(access)
            state.withLockedValue { $0.material = material; $0.refusedStamps = nil }
            return material.summary
        } catch {
            state.withLockedValue { $0.refusedStamps = stamps }
            throw error
        }
    }

    /// The periodic look at the TLS files, before a request.
    private func refreshTLS() {
        guard access.usesTLS else { return }
        let (due, refused) = state.withLockedValue { s in (Date().timeIntervalSince(s.lastCheck) >= 1, s.refusedStamps) }
        guard due else { return }
        let stamps = EtcdTLSMaterial.stamps(access)
        if let refused, refused == stamps { state.withLockedValue { $0.lastCheck = Date() }; return }
        do {
            if let summary = try reloadTLS() { log("etcd TLS material changed on disk, now in use: \(summary)") }
        } catch {
            log("etcd TLS material changed on disk but does not load, the previous stays in use: \(error)")
        }
    }

    /// The token to send, authenticating first when there is none.
    private func token() async throws -> String? {
        guard let user = access.user, let password = access.password else { return nil }
        if let token = state.withLockedValue({ $0.token }) { return token.isEmpty ? nil : token }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(prepared("/v3/auth/authenticate", .object(["name": .string(user), "password": .string(password)]), token: nil),
                                              timeout: .seconds(5))
        } catch {
            throw EtcdError("etcd at \(endpoint): \(await explain(error))")
        }
        let bytes = Array(try await response.body.collect(upTo: 1 << 20).readableBytesView)
        let json = try? JSON.parse(bytes)
        if response.status.code == 200, let token = json?["token"]?.stringValue, !token.isEmpty {
            state.withLockedValue { $0.token = token }
            return token
        }
        let message = EtcdClient.errorMessage(json) ?? String(decoding: bytes.prefix(200), as: UTF8.self)
        if message.contains("authentication is not enabled") {
            log("etcd at \(endpoint) has authentication off: the user \(user) (\(access.origin(.user))) is not needed there; going on without it")
            state.withLockedValue { $0.token = "" }
            return nil
        }
        throw EtcdError("etcd at \(endpoint): \(explain(message: message, path: "/v3/auth/authenticate", key: nil))")
    }

    private func prepared(_ path: String, _ body: JSON, token: String?) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: endpoint + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: token) }
        request.tlsConfiguration = state.withLockedValue { $0.material?.configuration }
        request.body = .bytes(ByteBuffer(string: body.serialized()))
        return request
    }

    /// Sends one request (TLS material looked at, token attached), its
    /// response's head; a failure to connect is explained in one line.
    private func send(_ path: String, _ body: JSON, timeout: Int64) async throws -> HTTPClientResponse {
        refreshTLS()
        let token = try await token()
        do {
            return try await http.execute(prepared(path, body, token: token), timeout: .seconds(timeout))
        } catch {
            throw EtcdError("etcd at \(endpoint) \(path): \(await explain(error))")
        }
    }

    /// An error message of the gateway's JSON ("message", or "error", or "error.message" in a stream).
    static func errorMessage(_ json: JSON?) -> String? {
        if let m = json?["message"]?.stringValue { return m }
        if let e = json?["error"] {
            if let m = e.stringValue { return m }
            if let m = e["message"]?.stringValue { return m }
        }
        return nil
    }

    /// Forgets the token when etcd says it is not valid any more (it lives
    /// `--auth-token-ttl`, 300 s by default, after its last use); whether it did.
    private func dropTokenIfRefused(_ message: String) -> Bool {
        guard message.contains("invalid auth token"), access.user != nil else { return false }
        state.withLockedValue { $0.token = nil }
        return true
    }

    /// One request, its whole reply as JSON; `key` names what it is about in errors.
    func call(_ path: String, _ body: JSON, timeout: Int64 = 5, key: String? = nil) async throws -> JSON {
        var attempt = 0
        while true {
            attempt += 1
            let response = try await send(path, body, timeout: timeout)
            let buffer = try await response.body.collect(upTo: 64 << 20)
            let bytes = Array(buffer.readableBytesView)
            guard let json = try? JSON.parse(bytes) else {
                let text = String(decoding: bytes.prefix(200), as: UTF8.self)
                if text.contains("HTTP request to an HTTPS server") {
                    throw EtcdError("etcd at \(endpoint) speaks TLS: give https:// (\(access.origin(.endpoint))) and its CA (--etcd-cafile)")
                }
                throw EtcdError("etcd at \(endpoint) \(path): \(response.status.code), not JSON: \(text)")
            }
            if response.status.code != 200 {
                let message = EtcdClient.errorMessage(json) ?? ""
                if attempt == 1 && dropTokenIfRefused(message) { continue }
                throw EtcdError("etcd at \(endpoint) \(path): \(explain(message: message, path: path, key: key))")
            }
            return json
        }
    }

    /// A message of etcd's said for the person who configured this client.
    func explain(message: String, path: String, key: String?) -> String {
        let user = access.user ?? ""
        if message.contains("authentication failed") {
            return "user \(user) was refused: wrong password or no such user (\(access.origin(.user)), \(access.origin(.password)))"
        }
        if message.contains("permission denied") {
            let what = key.map { " on \($0)" } ?? ""
            if access.user == nil { return "permission denied\(what): etcd has authentication on; give a user (--etcd-username, --etcd-password)" }
            return "permission denied\(what) for user \(user): etcd RBAC gives its roles no \(path.contains("range") || path.contains("watch") ? "read" : "write") permission there (grant readwrite on the prefix \(ClusterConfig.root))"
        }
        if message.contains("user name is empty") || message.contains("user name not found") && access.user == nil {
            return "etcd has authentication on: give a user (--etcd-username, and --etcd-password or --etcd-password-file)"
        }
        if message.contains("invalid auth token") { return "etcd refused the auth token of user \(user) twice (\(message))" }
        return message
    }

    /// A failed connection said in one line: which certificate, which name, which CA.
    func explain(_ error: Error) async -> String {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return await EtcdTLSDiagnosis.explainVerification(access, hostnameFailed: true)
        }
        let text = String(describing: error)
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return await EtcdTLSDiagnosis.explainVerification(access, hostnameFailed: false)
        }
        let client = access.certFile.map { "the client certificate \($0) (\(access.origin(.certFile)))" } ?? "no client certificate"
        if text.contains("ALERT") { return await explainAlert(text, client: client) }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("WRONG_VERSION") {
            return "etcd there does not speak TLS: give http:// (\(access.origin(.endpoint)))"
        }
        // A server that closes the connection at once, or resets it (when it
        // closes with the request still unread): a TLS server asked in plain
        // HTTP, or one refusing this client's certificate (its alert is lost
        // to the HTTP client): a handshake of its own tells.
        let closed = text.contains("remoteConnectionClosed") || text.contains("Connection reset by peer")
        if closed, let (host, port) = access.hostAndPort {
            if !access.usesTLS {
                if await EtcdTLSDiagnosis.serverChain(host: host, port: port) != nil {
                    return "etcd there speaks TLS: give https:// (\(access.origin(.endpoint))) and its CA (--etcd-cafile)"
                }
            } else if let configuration = state.withLockedValue({ $0.material?.configuration }),
                      let alert = await EtcdTLSDiagnosis.handshakeError(host: host, port: port, configuration: configuration),
                      !alert.contains("remoteConnectionClosed") || alert.contains("ALERT") {
                return await explainAlert(alert, client: client)
            }
        }
        return text
    }

    private func explainAlert(_ text: String, client: String) async -> String {
        if text.contains("CERTIFICATE_REQUIRED") || (access.certFile == nil && (text.contains("BAD_CERTIFICATE") || text.contains("HANDSHAKE_FAILURE"))) {
            return "etcd asks for a client certificate: give --etcd-certfile and --etcd-keyfile"
        }
        if text.contains("UNKNOWN_CA") || text.contains("BAD_CERTIFICATE") || text.contains("CERTIFICATE_UNKNOWN") {
            return "etcd refused \(client): it is not signed by a CA etcd trusts (its --trusted-ca-file), or not for client use"
        }
        if text.contains("CERTIFICATE_EXPIRED") { return "etcd refused \(client) as expired" }
        if text.contains("CERTIFICATE_REVOKED") { return "etcd refused \(client) as revoked" }
        return "etcd closed the connection during TLS: \(text)"
    }

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
    static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
    static func int64(_ json: JSON?) -> Int64 {
        switch json {
        case .string(let s)?: return Int64(s) ?? 0
        case .number(let n)?: return Int64(n) ?? 0
        default: return 0
        }
    }

    /// The end of the key range that holds every key starting with `prefix`.
    static func rangeEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xFF { bytes[bytes.count - 1] = last + 1; return base64(bytes) }
            bytes.removeLast()
        }
        return base64([0])
    }

    static func keyValue(_ json: JSON) -> EtcdKeyValue? {
        guard let key = json["key"]?.stringValue.flatMap({ Data(base64Encoded: $0) }) else { return nil }
        let value = json["value"]?.stringValue.flatMap { Data(base64Encoded: $0) } ?? Data()
        return EtcdKeyValue(key: String(decoding: key, as: UTF8.self), value: Array(value),
                            createRevision: int64(json["create_revision"]), modRevision: int64(json["mod_revision"]),
                            lease: int64(json["lease"]))
    }

    // MARK: Keys

    /// Every key under `prefix`, and the store's revision when read.
    public func list(prefix: String) async throws -> (items: [EtcdKeyValue], revision: Int64) {
        let reply = try await call("/v3/kv/range", .object(["key": .string(EtcdClient.base64(prefix)),
                                                             "range_end": .string(EtcdClient.rangeEnd(prefix))]), key: prefix + "*")
        let items = (reply["kvs"]?.arrayValue ?? []).compactMap(EtcdClient.keyValue)
        return (items, EtcdClient.int64(reply["header"]?["revision"]))
    }

    public func get(_ key: String) async throws -> EtcdKeyValue? {
        let reply = try await call("/v3/kv/range", .object(["key": .string(EtcdClient.base64(key))]), key: key)
        return (reply["kvs"]?.arrayValue ?? []).compactMap(EtcdClient.keyValue).first
    }

    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) async throws {
        _ = try await call("/v3/kv/put", EtcdClient.putRequest(key, value, lease: lease), key: key)
    }

    static func putRequest(_ key: String, _ value: [UInt8], lease: Int64) -> JSON {
        var o: JSONObject = ["key": .string(base64(key)), "value": .string(base64(value))]
        if lease != 0 { o["lease"] = .string(String(lease)) }
        return .object(o)
    }

    public func delete(_ key: String) async throws {
        _ = try await call("/v3/kv/deleterange", .object(["key": .string(EtcdClient.base64(key))]), key: key)
    }

    /// etcd's default limit of operations in one transaction (`--max-txn-ops`).
    public static let maximumOperations = 128

    public func write(puts: [(key: String, value: [UInt8])], deletes: [String], lease: Int64 = 0) async throws {
        guard puts.count + deletes.count <= EtcdClient.maximumOperations else {
            throw EtcdError("one transaction holds at most \(EtcdClient.maximumOperations) changes, not \(puts.count + deletes.count)")
        }
        var ops: [JSON] = puts.map { .object(["request_put": EtcdClient.putRequest($0.key, $0.value, lease: lease)]) }
        ops += deletes.map { .object(["request_delete_range": .object(["key": .string(EtcdClient.base64($0))])]) }
        guard !ops.isEmpty else { return }
        _ = try await call("/v3/kv/txn", .object(["success": .array(ops)]), key: puts.first?.key ?? deletes.first)
    }

    /// Puts `value` only if `key` does not exist (one transaction): whoever
    /// creates a key first holds it. Returns whether this call did.
    public func create(_ key: String, _ value: [UInt8], lease: Int64) async throws -> Bool {
        try await transaction(key, compare: ["target": .string("CREATE"), "create_revision": .string("0")], put: value, lease: lease)
    }

    /// Puts `value` only if `key` holds `expected` now. Returns whether it did.
    public func replace(_ key: String, ifValue expected: [UInt8], with value: [UInt8], lease: Int64) async throws -> Bool {
        try await transaction(key, compare: ["target": .string("VALUE"), "value": .string(EtcdClient.base64(expected))],
                              put: value, lease: lease)
    }

    private func transaction(_ key: String, compare: JSONObject, put value: [UInt8], lease: Int64) async throws -> Bool {
        var condition = compare
        condition["key"] = .string(EtcdClient.base64(key))
        condition["result"] = .string("EQUAL")
        let reply = try await call("/v3/kv/txn", .object([
            "compare": .array([.object(condition)]),
            "success": .array([.object(["request_put": EtcdClient.putRequest(key, value, lease: lease)])]),
        ]), key: key)
        return reply["succeeded"]?.boolValue ?? false
    }

    /// Deletes `key` only if it holds `expected` now (one transaction). Returns whether it did.
    public func delete(_ key: String, ifValue expected: [UInt8]) async throws -> Bool {
        let reply = try await call("/v3/kv/txn", .object([
            "compare": .array([.object(["key": .string(EtcdClient.base64(key)), "target": .string("VALUE"),
                                        "value": .string(EtcdClient.base64(expected)), "result": .string("EQUAL")])]),
            "success": .array([.object(["request_delete_range": .object(["key": .string(EtcdClient.base64(key))])])]),
        ]), key: key)
        return reply["succeeded"]?.boolValue ?? false
    }

    /// Asks etcd for its status within `seconds`: throws when it does not
    /// answer in time (stopped, hung, unreachable).
    public func ping(seconds: Int64 = 2) async throws {
        _ = try await call("/v3/maintenance/status", .object([:]), timeout: seconds)
    }

    // MARK: Leases

    /// A new lease of `ttl` seconds.
    public func grantLease(ttl: Int) async throws -> Int64 {
        let reply = try await call("/v3/lease/grant", .object(["TTL": .string(String(ttl))]))
        let id = EtcdClient.int64(reply["ID"])
        if id == 0 { throw EtcdError("etcd at \(endpoint): no lease granted: \(reply.serialized())") }
        return id
    }

    /// Renews `lease`; returns the seconds it has left (0: it has expired).
    public func keepAlive(_ lease: Int64) async throws -> Int {
        // The gateway answers on a stream: the first message is the answer.
        for attempt in 1...2 {
            let response = try await send("/v3/lease/keepalive", .object(["ID": .string(String(lease))]), timeout: 5)
            var reader = JSONStreamReader()
            for try await chunk in response.body {
                if let message = reader.feed(Array(chunk.readableBytesView)).first {
                    if let problem = EtcdClient.errorMessage(message) {
                        if attempt == 1 && dropTokenIfRefused(problem) { break }
                        throw EtcdError("etcd at \(endpoint) keepalive: \(explain(message: problem, path: "/v3/lease/keepalive", key: nil))")
                    }
                    return Int(EtcdClient.int64(message["result"]?["TTL"]))
                }
            }
        }
        throw EtcdError("etcd at \(endpoint): keepalive of lease \(lease) got no answer")
    }

    public func revoke(_ lease: Int64) async throws {
        _ = try await call("/v3/lease/revoke", .object(["ID": .string(String(lease))]))
    }

    // MARK: Watch

    /// The changes under `prefix` from `revision` on, as they happen. The
    /// stream ends with an error when the connection or the watch fails (a
    /// compacted revision included): read the prefix again and watch anew.
    public func watch(prefix: String, from revision: Int64) -> AsyncThrowingStream<[EtcdEvent], Error> {
        let body = JSON.object(["create_request": .object([
            "key": .string(EtcdClient.base64(prefix)), "range_end": .string(EtcdClient.rangeEnd(prefix)),
            "start_revision": .string(String(revision)),
        ])])
        let endpoint = self.endpoint
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let response = try await self.send("/v3/watch", body, timeout: 24 * 365 * 3600)
                    var reader = JSONStreamReader()
                    for try await chunk in response.body {
                        for message in reader.feed(Array(chunk.readableBytesView)) {
                            if let problem = EtcdClient.errorMessage(message), self.dropTokenIfRefused(problem) {
                                throw EtcdError("etcd at \(endpoint) watch: the auth token was refused; watching again")
                            }
                            if let problem = EtcdClient.errorMessage(message), message["result"] == nil {
                                throw EtcdError("etcd at \(endpoint) watch of \(prefix): \(self.explain(message: problem, path: "/v3/watch", key: prefix))")
                            }
                            let events = try EtcdClient.watchEvents(in: message, endpoint: endpoint)
                            if !events.isEmpty { continuation.yield(events) }
                        }
                    }
                    continuation.finish(throwing: EtcdError("etcd at \(endpoint): the watch stream ended"))
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

extension EtcdClient {
    /// The events of one message of a watch stream; an error or a canceled
    /// (or compacted) watch is thrown, so the caller starts again from a list.
    static func watchEvents(in message: JSON, endpoint: String) throws(EtcdError) -> [EtcdEvent] {
        if let error = message["error"] {
            throw EtcdError("etcd at \(endpoint) watch: \(error.serialized())")
        }
        let result = message["result"]
        if result?["canceled"]?.boolValue == true || result?["compact_revision"] != nil {
            throw EtcdError("etcd at \(endpoint) watch canceled: \(result?["cancel_reason"]?.stringValue ?? "compacted")")
        }
        return (result?["events"]?.arrayValue ?? []).compactMap { e in
            guard let kv = e["kv"].flatMap(EtcdClient.keyValue) else { return nil }
            return EtcdEvent(kind: e["type"]?.stringValue == "DELETE" ? .delete : .put, keyValue: kv)
        }
    }
}

/// Splits a stream of JSON objects (one after another, as the gateway sends
/// them) into whole messages, whatever the chunks' boundaries.
struct JSONStreamReader {
    private var pending: [UInt8] = []

    mutating func feed(_ bytes: [UInt8]) -> [JSON] {
        pending += bytes
        var messages: [JSON] = []
        var depth = 0, inString = false, escaped = false, start: Int?
        var consumed = 0
        for (i, b) in pending.enumerated() {
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"):
                if depth == 0 { start = i }
                depth += 1
            case UInt8(ascii: "}"):
                depth -= 1
                if depth == 0, let s = start {
                    if let json = try? JSON.parse(pending[s...i]) { messages.append(json) }
                    consumed = i + 1
                    start = nil
                }
            default: break
            }
        }
        pending.removeFirst(consumed)
        return messages
    }
}
