import AsyncHTTPClient
import BerthJSON
import Foundation
import NIOCore

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
/// `/v3/lease/...`, `/v3/watch`), over AsyncHTTPClient. Keys and values are
/// base64 in that JSON, 64-bit integers are strings.
public final class EtcdClient: Sendable {
    public let endpoint: String
    let http: HTTPClient

    /// `endpoint` as "http://ADDRESS:PORT".
    public init(endpoint: String) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
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

    // MARK: Requests

    private func request(_ path: String, _ body: JSON) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: endpoint + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body.serialized()))
        return request
    }

    /// One request, its whole reply as JSON.
    func call(_ path: String, _ body: JSON, timeout: Int64 = 5) async throws -> JSON {
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request(path, body), timeout: .seconds(timeout))
        } catch {
            throw EtcdError("etcd at \(endpoint) \(path): \(error)")
        }
        let buffer = try await response.body.collect(upTo: 64 << 20)
        let bytes = Array(buffer.readableBytesView)
        guard let json = try? JSON.parse(bytes) else {
            throw EtcdError("etcd at \(endpoint) \(path): \(response.status.code), not JSON: \(String(decoding: bytes.prefix(200), as: UTF8.self))")
        }
        if response.status.code != 200 {
            throw EtcdError("etcd at \(endpoint) \(path): \(response.status.code) \(json["message"]?.stringValue ?? json["error"]?.stringValue ?? "")")
        }
        return json
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
                                                             "range_end": .string(EtcdClient.rangeEnd(prefix))]))
        let items = (reply["kvs"]?.arrayValue ?? []).compactMap(EtcdClient.keyValue)
        return (items, EtcdClient.int64(reply["header"]?["revision"]))
    }

    public func get(_ key: String) async throws -> EtcdKeyValue? {
        let reply = try await call("/v3/kv/range", .object(["key": .string(EtcdClient.base64(key))]))
        return (reply["kvs"]?.arrayValue ?? []).compactMap(EtcdClient.keyValue).first
    }

    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) async throws {
        _ = try await call("/v3/kv/put", EtcdClient.putRequest(key, value, lease: lease))
    }

    static func putRequest(_ key: String, _ value: [UInt8], lease: Int64) -> JSON {
        var o: JSONObject = ["key": .string(base64(key)), "value": .string(base64(value))]
        if lease != 0 { o["lease"] = .string(String(lease)) }
        return .object(o)
    }

    public func delete(_ key: String) async throws {
        _ = try await call("/v3/kv/deleterange", .object(["key": .string(EtcdClient.base64(key))]))
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
        _ = try await call("/v3/kv/txn", .object(["success": .array(ops)]))
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
        ]))
        return reply["succeeded"]?.boolValue ?? false
    }

    /// Deletes `key` only if it holds `expected` now (one transaction). Returns whether it did.
    public func delete(_ key: String, ifValue expected: [UInt8]) async throws -> Bool {
        let reply = try await call("/v3/kv/txn", .object([
            "compare": .array([.object(["key": .string(EtcdClient.base64(key)), "target": .string("VALUE"),
                                        "value": .string(EtcdClient.base64(expected)), "result": .string("EQUAL")])]),
            "success": .array([.object(["request_delete_range": .object(["key": .string(EtcdClient.base64(key))])])]),
        ]))
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
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request("/v3/lease/keepalive", .object(["ID": .string(String(lease))])),
                                              timeout: .seconds(5))
        } catch {
            throw EtcdError("etcd at \(endpoint) keepalive: \(error)")
        }
        var reader = JSONStreamReader()
        for try await chunk in response.body {
            if let message = reader.feed(Array(chunk.readableBytesView)).first {
                return Int(EtcdClient.int64(message["result"]?["TTL"]))
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
        let request = request("/v3/watch", body)
        let http = self.http, endpoint = self.endpoint
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let response = try await http.execute(request, timeout: .hours(24 * 365))
                    var reader = JSONStreamReader()
                    for try await chunk in response.body {
                        for message in reader.feed(Array(chunk.readableBytesView)) {
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
