import Foundation
import Testing
import BerthCNI
import BerthJSON
import BerthSystem
import BerthCNIPlugin

/// Fake plugins (shell scripts in a directory of the test's) stand for
/// what a real one can answer; no root, no kernel.
@Suite("running another plugin")
struct PluginExecutorTests {
    final class Plugins {
        let directory = NSTemporaryDirectory() + "berthtest-exec-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        init() { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(atPath: directory) }
        func add(_ name: String, _ script: String) {
            let path = "\(directory)/\(name)"
            try? ("#!/bin/sh\n" + script).write(toFile: path, atomically: false, encoding: .utf8)
            chmod(path, 0o755)
        }
    }

    @Test("a plugin gets its stdin and CNI_COMMAND; its result is parsed, nothing printed is nil")
    func result() throws {
        let p = Plugins()
        p.add("echoer", #"read line; printf '{"cniVersion":"1.1.0","got":%s,"command":"%s","x":"%s"}' "$line" "$CNI_COMMAND" "$X""#)
        p.add("silent", "exit 0")
        let run = try PluginExecutor(type: "echoer", searchPath: ["/nonexistent", p.directory])
        let json = try #require(try run.run(.add, stdin: Array("{\"a\":1}\n".utf8), environment: ["X": "y"]))
        #expect(json["got"]?["a"]?.intValue == 1 && json["command"]?.stringValue == "ADD" && json["x"]?.stringValue == "y")
        #expect(try PluginExecutor(type: "silent", searchPath: [p.directory]).run(.del, stdin: [], environment: [:]) == nil)
    }

    @Test("each failure is told apart, and passed on as the CNI error the spec gives it")
    func failures() throws {
        let p = Plugins()
        p.add("refuses", #"echo '{"cniVersion":"1.1.0","code":11,"msg":"try later"}'; exit 1"#)
        p.add("crashes", "echo oops; exit 3")
        p.add("garbles", "echo not json")
        func failure(_ type: String) -> PluginRunError? {
            do {
                _ = try PluginExecutor(type: type, searchPath: [p.directory]).run(.add, stdin: [], environment: [:])
                return nil
            } catch {
                return error
            }
        }
        let refused = try #require(failure("refuses"))
        #expect(refused.cniError.code == 11 && refused.cniError.msg == "refuses ADD: try later")
        #expect(refused.description == "refuses ADD failed with CNI error 11: try later")
        let crashed = try #require(failure("crashes"))
        #expect(crashed == .exitStatus(type: "crashes", command: .add, status: 3, output: "oops"))
        #expect(crashed.cniError.code == 5 && crashed.cniError.details == "oops")
        let garbled = try #require(failure("garbles"))
        #expect(garbled.cniError.code == CNIError.Code.decodeFailure.rawValue)
        do {
            _ = try PluginExecutor(type: "missing", searchPath: [p.directory, "/nowhere"])
            Issue.record("found a missing plugin")
        } catch {
            #expect(error.cniError.code == 7 && error.cniError.details == "searched: \(p.directory):/nowhere")
            #expect(error.description.contains("not found on CNI_PATH"))
        }
        #expect(throws: PluginRunError.self) { try PluginExecutor(type: "../refuses", searchPath: [p.directory]) }
    }
}
