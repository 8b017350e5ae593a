import Foundation
import Testing
import BerthJSON
@testable import BerthCluster

/// What the client sends to etcd's JSON gateway and how it reads the
/// replies, without an etcd (the end-to-end suites run against a real one).
@Suite("etcd's JSON gateway: requests and replies")
struct EtcdClientTests {
    func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

    @Test("a prefix's range ends at the prefix with its last byte raised; the empty prefix's at the zero byte (every key)")
    func rangeEnds() {
        #expect(EtcdClient.rangeEnd("/berth/clusters/pods/") == b64("/berth/clusters/pods0"))
        #expect(EtcdClient.rangeEnd("a") == b64("b"))
        #expect(EtcdClient.rangeEnd("") == Data([0]).base64EncodedString())
    }

    @Test("a key-value reads back from base64, revisions and leases as strings (int64 in JSON), a missing value as empty")
    func keyValues() throws {
        let json = try JSON.parse(#"{"key":"\#(b64("/k"))","value":"\#(b64("v1"))","create_revision":"7","mod_revision":"9","lease":"7587870214398412042"}"#)
        let kv = try #require(EtcdClient.keyValue(json))
        #expect(kv.key == "/k" && kv.value == Array("v1".utf8) && kv.createRevision == 7 && kv.modRevision == 9)
        #expect(kv.lease == 7587870214398412042)
        let bare = try #require(EtcdClient.keyValue(try JSON.parse(#"{"key":"\#(b64("/k"))","mod_revision":12}"#)))
        #expect(bare.value.isEmpty && bare.modRevision == 12)
        #expect(EtcdClient.keyValue(try JSON.parse(#"{"value":"eA=="}"#)) == nil, "no key, no record")
        #expect(EtcdClient.keyValue(try JSON.parse(#"{"key":"not base64!"}"#)) == nil)
    }

    @Test("a put carries its lease as a decimal string, and none when 0")
    func puts() {
        #expect(EtcdClient.putRequest("/k", Array("v".utf8), lease: 0) == .object(["key": .string(b64("/k")), "value": .string(b64("v"))]))
        #expect(EtcdClient.putRequest("/k", [], lease: 42)["lease"] == .string("42"))
    }

    @Test("watch messages: events in order, puts and deletes; an error, a cancel or a compaction ends the watch")
    func watchMessages() throws {
        let message = try JSON.parse("""
            {"result":{"header":{"revision":"20"},"events":[
              {"kv":{"key":"\(b64("/a"))","value":"\(b64("1"))","mod_revision":"19"}},
              {"type":"DELETE","kv":{"key":"\(b64("/b"))","mod_revision":"20"}},
              {"kv":{"value":"\(b64("no key"))"}}]}}
            """)
        let events = try EtcdClient.watchEvents(in: message, endpoint: "http://127.0.0.1:2379")
        #expect(events.map(\.kind) == [.put, .delete])
        #expect(events.map(\.keyValue.key) == ["/a", "/b"])
        #expect(try EtcdClient.watchEvents(in: try JSON.parse(#"{"result":{"created":true}}"#), endpoint: "e").isEmpty)
        for ending in [#"{"error":{"grpc_code":14,"message":"unavailable"}}"#,
                       #"{"result":{"canceled":true,"cancel_reason":"permission denied"}}"#,
                       #"{"result":{"compact_revision":"15"}}"#] {
            #expect(throws: EtcdError.self) { try EtcdClient.watchEvents(in: try JSON.parse(ending), endpoint: "e") }
        }
        let canceled = try JSON.parse(#"{"result":{"canceled":true,"cancel_reason":"permission denied"}}"#)
        do throws(EtcdError) {
            _ = try EtcdClient.watchEvents(in: canceled, endpoint: "http://e:1")
        } catch {
            #expect(error.description == "etcd at http://e:1 watch canceled: permission denied")
        }
    }
}
