import Testing
import BerthNet

@Suite("names Berth derives: digests and shortened names")
struct DerivedNameTests {
    @Test("SHA-256 matches the FIPS 180-4 test vectors")
    func sha256Vectors() {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("a name at the limit is kept; one byte past it becomes a prefix, '~' and 16 hex digits, exactly at the limit")
    func fitAtAndPastTheLimit() {
        let at = String(repeating: "a", count: 48)
        #expect(DerivedName.fit(at, limit: 48) == at)
        let past = at + "b"
        let short = DerivedName.fit(past, limit: 48)
        #expect(short.utf8.count == 48)
        #expect(short.hasPrefix(String(repeating: "a", count: 31) + "~"))
        #expect(short != DerivedName.fit(at + "c", limit: 48), "two long names that share the prefix must differ")
        #expect(DerivedName.fit(past, limit: 48) == short, "the same name must always give the same result")
    }

    @Test("a shortened name never splits a multi-byte character")
    func fitKeepsCharactersWhole() {
        let name = String(repeating: "ä", count: 40)  // 80 bytes
        let short = DerivedName.fit(name, limit: 40)
        #expect(short.utf8.count <= 40)
        #expect(short.hasPrefix(String(repeating: "ä", count: 11) + "~"))
    }

}
