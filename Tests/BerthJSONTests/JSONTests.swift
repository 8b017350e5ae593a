import Testing
import BerthJSON

@Suite("JSON parsing and printing")
struct JSONTests {
    @Test("parses every kind of value and prints it back compactly")
    func roundTrip() throws {
        let text = #"{"a":1,"b":[true,false,null],"c":{"d":"e\n\"f\""},"g":-1.5e3,"h":[]}"#
        let value = try JSON.parse(text)
        #expect(value.serialized() == text)
        #expect(value["a"]?.intValue == 1)
        #expect(value["c"]?["d"]?.stringValue == "e\n\"f\"")
        #expect(value["g"] == .number("-1.5e3"))
    }

    @Test("keeps key order and lets a repeated key replace the earlier value")
    func keyOrder() throws {
        let value = try JSON.parse(#"{"z":1,"a":2,"z":3}"#)
        #expect(value.objectValue?.keys == ["z", "a"])
        #expect(value["z"]?.intValue == 3)
    }

    @Test("decodes escapes including surrogate pairs")
    func escapes() throws {
        let value = try JSON.parse(#""\u00e9\ud83d\ude00\/\t""#)
        #expect(value.stringValue == "é😀/\t")
    }

    @Test("pretty printing indents by four spaces")
    func pretty() {
        let value = JSON.object(["a": .array([.int(1)]), "b": .object([:])])
        #expect(value.serialized(pretty: true) == "{\n    \"a\": [\n        1\n    ],\n    \"b\": {}\n}")
    }

    @Test("control characters are escaped when printed")
    func controlCharacters() {
        #expect(JSON.string("a\u{1}b").serialized() == #""a\u0001b""#)
    }

    @Test("rejects malformed documents with the offset of the problem",
          arguments: [
            ("", "empty input"), ("{", "unexpected end of input"), (#"{"a" 1}"#, "expected ':'"),
            ("[1,]", "unexpected character"), ("01", "unexpected data after the JSON value"),
            ("tru", "unexpected end of input"), (#""abc"#, "unterminated string"), ("{} x", "unexpected data after the JSON value"),
            (#""\ud800""#, "unpaired surrogate in \\u escape"), ("1.", "invalid number"), ("-", "invalid number"),
            ("\"a\u{1}\"", "control character in string"), ("{1:2}", "expected a string key"),
          ])
    func malformed(text: String, reason: String) {
        #expect(throws: JSONParseError.self) { try JSON.parse(text) }
        do {
            _ = try JSON.parse(text)
        } catch {
            #expect(error.reason == reason)
        }
    }

    @Test("rejects invalid UTF-8 inside strings")
    func invalidUTF8() {
        let bytes: [UInt8] = [0x22, 0xFF, 0xFE, 0x22]
        #expect(throws: JSONParseError.self) { try JSON.parse(bytes) }
    }

    @Test("refuses nesting deeper than the limit instead of overflowing the stack")
    func deepNesting() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSON.parse(deep) }
        let fine = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        _ = try JSON.parse(fine)
    }

    @Test("objects compare equal regardless of key order")
    func objectEquality() throws {
        #expect(try JSON.parse(#"{"a":1,"b":2}"#) == JSON.parse(#"{"b":2,"a":1}"#))
        #expect(try JSON.parse(#"{"a":1}"#) != JSON.parse(#"{"a":2}"#))
    }
}
