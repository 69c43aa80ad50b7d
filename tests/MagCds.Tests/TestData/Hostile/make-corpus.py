#!/usr/bin/env python3
"""Writes the hostile-input corpus: one file per case, and manifest.json with what each door must answer.

Run from this folder after changing a case: python3 make-corpus.py (the files are committed; the tests read them).
Doors: evaluate  POST /fhir/Observation/$mag-evaluate   validate POST /fhir/Observation/$validate
       cds       POST /cds-services/magcds-patient-view (unsigned mode)   notify POST /worker/notifications
Each expectation is [status, MagCds code]; a door not named is not sent the case. The suite runs the FHIR REST door
with MaxRequestBodyBytes = 262144 and the CDS Hooks door with MaxRequestBodyBytes = 262144.
"""
import json, os, shutil

HERE = os.path.dirname(os.path.abspath(__file__))
LIMIT = 262144
JSON, XML = "application/fhir+json", "application/fhir+xml"

OBS = {
    "resourceType": "Observation", "id": "h1", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "39087-2"}]},
    "subject": {"reference": "Patient/h"}, "effectiveDateTime": "2026-03-02T09:15:00Z",
    "valueQuantity": {"value": 25000, "unit": "BTU"},
}
OBS_TEXT = json.dumps(OBS)
OBS_XML = ('<Observation xmlns="http://hl7.org/fhir"><id value="h1"/><status value="final"/><code><coding>'
           '<system value="http://loinc.org"/><code value="39087-2"/></coding></code><subject><reference value="Patient/h"/>'
           '</subject><effectiveDateTime value="2026-03-02T09:15:00Z"/><valueQuantity><value value="25000"/><unit value="BTU"/>'
           '</valueQuantity></Observation>')
CDS = {"hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "hook": "patient-view",
       "context": {"userId": "Practitioner/x", "patientId": "h"},
       "prefetch": {"antiMagResults": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": OBS}]}}}

cases = []

def add(name, body, ctype, **expect):
    cases.append((name, body, ctype, expect))

# Expectations by kind of failure, per door.
UNPARSEABLE = dict(evaluate=[400, "unparseable"], validate=[200, "unparseable"], notify=[400, "unparseable"])
UNPARSEABLE_ALL = dict(UNPARSEABLE, cds=[400, "invalid-cds-request"])
MEDIA = dict(evaluate=[415, "unsupported-media-type"], validate=[415, "unsupported-media-type"], cds=[415, "unsupported-media-type"], notify=[415, "unsupported-media-type"])
TOO_LARGE = dict(evaluate=[413, "payload-too-large"], validate=[413, "payload-too-large"], cds=[413, "payload-too-large"])
EVALUATED = dict(evaluate=[200, "evaluated"], validate=[200, "evaluated"], notify=[200, "notification-queued"])
NOT_EVALUATED = dict(evaluate=[422, "nothing-evaluated"], validate=[200, "evaluated"], notify=[200, "notification-queued"])
WRONG_TYPE = dict(evaluate=[422, "unsupported-resource"], validate=[422, "unsupported-resource"], notify=[200, "notification-queued"])
CDS_BAD = dict(cds=[400, "invalid-cds-request"])
UTF8 = dict(UNPARSEABLE, cds=[400, "unparseable"])  # checked before any door reads the body

def obs(**changes):
    o = json.loads(OBS_TEXT)
    for k, v in changes.items():
        if v is None: o.pop(k, None)
        else: o[k] = v
    return json.dumps(o)

# --- malformed and truncated JSON / XML
for i, cut in enumerate([1, 2, 10, 25, 50, 80, 120, 160, 200, len(OBS_TEXT) - 1]):
    add(f"json-truncated-at-{cut}", OBS_TEXT[:cut], JSON, **UNPARSEABLE_ALL)
for cut in [5, 20, 60, 100, 150, 200, 260, 300, 340, len(OBS_XML) - 1]:
    add(f"xml-truncated-at-{cut}", OBS_XML[:cut], XML, **UNPARSEABLE)
for name, body in [("empty", ""), ("whitespace", "   \n\t "), ("plain-word", "hello"), ("number", "42"), ("string", '"Observation"'),
                   ("null", "null"), ("true", "true"), ("array", "[]"), ("array-of-observation", "[" + OBS_TEXT + "]"),
                   ("trailing-comma", OBS_TEXT[:-1] + ",}"), ("single-quotes", OBS_TEXT.replace('"', "'")),
                   ("comment", "/* c */" + OBS_TEXT), ("two-documents", OBS_TEXT + OBS_TEXT), ("unquoted-key", OBS_TEXT.replace('"status"', "status")),
                   ("control-char-in-string", OBS_TEXT.replace("Patient/h", "Patient/\u0001h")), ("nul-byte", OBS_TEXT.replace("final", "fin\u0000al"))]:
    add(f"json-{name}", body, JSON, **(dict(UNPARSEABLE_ALL, notify=[200, "notification-queued"]) if name == "empty" else UNPARSEABLE_ALL))
for name, body in [("not-xml", "<<<>>>"), ("wrong-namespace", OBS_XML.replace("http://hl7.org/fhir", "urn:other")),
                   ("no-namespace", OBS_XML.replace(' xmlns="http://hl7.org/fhir"', "")), ("unclosed-tag", OBS_XML.replace("</code>", "")),
                   ("two-roots", OBS_XML + OBS_XML), ("text-root", "just text"), ("json-as-xml", OBS_TEXT)]:
    add(f"xml-{name}", body, XML, **UNPARSEABLE)

# --- wrong or missing resourceType, wrong resource types
for name, rt in [("missing", None), ("empty", ""), ("number", 42), ("null-value", None), ("misspelt", "Obsrvation")]:
    o = json.loads(OBS_TEXT)
    if name == "missing": o.pop("resourceType")
    else: o["resourceType"] = rt
    add(f"resourcetype-{name}", json.dumps(o), JSON, **UNPARSEABLE_ALL)
add("resource-patient", json.dumps({"resourceType": "Patient", "id": "x"}), JSON, **WRONG_TYPE, cds=[400, "invalid-cds-request"])
# Valid resources of other types (minimal ones of these would miss required elements and be unparseable).
for rt, body in [("OperationOutcome", {"issue": [{"severity": "error", "code": "exception"}]}),
                 ("RiskAssessment", {"status": "final", "subject": {"reference": "Patient/h"}}),
                 ("DiagnosticReport", {"status": "final", "code": {"text": "x"}}), ("Binary", {"contentType": "text/plain", "data": "eA=="})]:
    add(f"resource-{rt.lower()}", json.dumps({"resourceType": rt, "id": "x"} | body), JSON, evaluate=[422, "unsupported-resource"],
        validate=[422, "unsupported-resource"], notify=[200, "notification-queued"], cds=[400, "invalid-cds-request"])
for rt in ["OperationOutcome", "RiskAssessment", "CapabilityStatement"]:
    add(f"resource-{rt.lower()}-missing-required", json.dumps({"resourceType": rt, "id": "x"}), JSON, **UNPARSEABLE_ALL)

# --- content types (valid body, wrong type)
for name, ct in [("text-plain", "text/plain"), ("form", "application/x-www-form-urlencoded"), ("octet", "application/octet-stream"),
                 ("multipart", "multipart/form-data; boundary=x"), ("html", "text/html"), ("fhir-json-typo", "application/fhir+jsn"),
                 ("yaml", "application/yaml"), ("csv", "text/csv")]:
    add(f"content-type-{name}", OBS_TEXT, ct, **MEDIA)

# --- invalid UTF-8 and other encodings (written as bytes)
BAD_UTF8 = {"lone-continuation": b"\x80", "overlong-slash": b"\xc0\xaf", "truncated-sequence": b"\xe2\x82", "invalid-byte-ff": b"\xff",
            "surrogate-half": b"\xed\xa0\x80", "overlong-nul": b"\xc0\x80"}
for name, seq in BAD_UTF8.items():
    raw = OBS_TEXT.encode().replace(b"Patient/h", b"Patient/" + seq + b"h")
    add(f"utf8-{name}", raw, JSON, **UTF8)
    add(f"utf8-xml-{name}", OBS_XML.encode().replace(b"Patient/h", b"Patient/" + seq + b"h"), XML, **UNPARSEABLE)
add("utf16-body", OBS_TEXT.encode("utf-16"), JSON, **UTF8)
add("utf8-bom", b"\xef\xbb\xbf" + OBS_TEXT.encode(), JSON, evaluate=[200, "evaluated"], validate=[200, "evaluated"], notify=[200, "notification-queued"])

# --- deep nesting
for depth in [200, 1000, 5000, 12000]:
    add(f"json-deep-arrays-{depth}", "[" * depth + "]" * depth, JSON, **UNPARSEABLE_ALL)
    add(f"json-deep-objects-{depth}", '{"a":' * depth + "1" + "}" * depth, JSON, **UNPARSEABLE_ALL)
    if depth <= 5000:
        inner = '{"resourceType":"Observation","status":"final","extension":[' + '{"url":"x","extension":[' * depth + ']}' * depth + ']}'
        add(f"json-deep-extensions-{depth}", inner, JSON, **UNPARSEABLE_ALL)
    add(f"xml-deep-{depth}", '<Observation xmlns="http://hl7.org/fhir">' + "<a>" * depth + "</a>" * depth + "</Observation>", XML, **UNPARSEABLE)
add("json-deep-contained-bundles", '{"resourceType":"Bundle","type":"collection","entry":[' + '{"resource":{"resourceType":"Bundle","type":"collection","entry":[' * 150 + ']}}' * 150 + ']}',
    JSON, **UNPARSEABLE_ALL)

# --- very long strings and huge arrays (under the body limit)
for size in [10_000, 100_000, 200_000]:
    add(f"long-string-value-{size}", obs(valueQuantity=None, valueString="A" * size), JSON, evaluate=[200, "evaluated"], validate=[200, "evaluated"], notify=[200, "notification-queued"])
    add(f"long-id-{size}", obs(id="a" * size), JSON, **UNPARSEABLE)
    add(f"long-unit-{size}", obs(valueQuantity={"value": 1, "unit": "U" * size}), JSON, evaluate=[200, "evaluated"], validate=[200, "evaluated"], notify=[200, "notification-queued"])
    add(f"long-system-{size}", obs(code={"coding": [{"system": "http://loinc.org/" + "x" * size, "code": "39087-2"}]}), JSON, **NOT_EVALUATED)
def sized(body):
    return TOO_LARGE if len(body) > LIMIT else EVALUATED
for n in [1000, 4000, 7000]:
    for name, body in [(f"many-identifiers-{n}", obs(identifier=[{"system": "urn:x", "value": str(i)} for i in range(n)])),
                       (f"many-codings-{n}", obs(code={"coding": [{"system": "urn:x", "code": str(i)} for i in range(n)] + [{"system": "http://loinc.org", "code": "39087-2"}]})),
                       (f"many-reference-ranges-{n}", obs(referenceRange=[{"high": {"value": i}} for i in range(n)]))]:
        add(name, body, JSON, **sized(body))
add("huge-array-of-numbers", '{"resourceType":"Observation","status":"final","x":[' + ",".join(["1"] * 50000) + "]}", JSON, **UNPARSEABLE_ALL)
bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": json.loads(OBS_TEXT) | {"id": f"b{i}"}} for i in range(600)]}
add("bundle-600-observations", json.dumps(bundle), JSON, evaluate=[200, "evaluated"], validate=[422, "unsupported-resource"], notify=[200, "notification-queued"])
add("bundle-3000-empty-entries", json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [{} for _ in range(3000)]}), JSON, **UNPARSEABLE)
add("bundle-3000-not-anti-mag", json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {"resourceType": "Patient", "id": f"p{i}"}} for i in range(3000)]}), JSON,
    evaluate=[422, "nothing-evaluated"], validate=[422, "unsupported-resource"], notify=[200, "notification-queued"])

# --- numeric extremes
for name, number in [("1e308", "1e308"), ("minus-1e308", "-1e308"), ("1e400", "1e400"), ("1e-400", "1e-400"), ("minus-zero", "-0"),
                     ("30-digits", "123456789012345678901234567890"), ("many-decimals", "0." + "1" * 40), ("hex", "0x10"),
                     ("leading-plus", "+5"), ("leading-zeros", "00025")]:
    body = OBS_TEXT.replace("25000", number)
    ok = name in ("minus-zero", "many-decimals", "1e-400")  # 1e-400 reads as 0: a value below every limit
    add(f"number-{name}", body, JSON, **(dict(evaluate=[200, "evaluated"], validate=[200, "evaluated"], notify=[200, "notification-queued"]) if ok else UNPARSEABLE))
for name, literal in [("nan", "NaN"), ("infinity", "Infinity"), ("minus-infinity", "-Infinity"), ("nan-string", '"NaN"'), ("number-as-string", '"25000"'),
                      ("true", "true"), ("null", "null"), ("object", "{}"), ("array", "[25000]")]:
    add(f"value-{name}", OBS_TEXT.replace("25000", literal), JSON, **UNPARSEABLE)
add("xml-number-nan", OBS_XML.replace('<value value="25000"/>', '<value value="NaN"/>'), XML, **UNPARSEABLE)
add("xml-number-1e400", OBS_XML.replace('<value value="25000"/>', '<value value="1e400"/>'), XML, **UNPARSEABLE)
add("value-negative-huge", OBS_TEXT.replace("25000", "-99999999999999999999999"), JSON, evaluate=[200, "evaluated"], validate=[200, "evaluated"], notify=[200, "notification-queued"])

# --- duplicate keys
add("duplicate-status", OBS_TEXT.replace('"status": "final"', '"status": "final", "status": "cancelled"'), JSON, **UNPARSEABLE)
# Firely reads resourceType on its own and does not object to it twice (the same value here): the resource is read as it says.
add("duplicate-resourcetype", OBS_TEXT.replace('"resourceType": "Observation"', '"resourceType": "Observation", "resourceType": "Observation"'), JSON, **EVALUATED)
add("duplicate-value", OBS_TEXT.replace('"valueQuantity"', '"valueString": "x", "valueQuantity"'), JSON, **UNPARSEABLE)
add("duplicate-subject", OBS_TEXT.replace('"subject"', '"subject": {"reference": "Patient/other"}, "subject"'), JSON, **UNPARSEABLE)

# --- XML attacks
DTD = '<?xml version="1.0"?>'
for name, doc in [
    ("xxe-file", DTD + '<!DOCTYPE o [<!ENTITY x SYSTEM "file:///etc/passwd">]><Observation xmlns="http://hl7.org/fhir"><status value="&x;"/></Observation>'),
    ("xxe-http", DTD + '<!DOCTYPE o [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><Observation xmlns="http://hl7.org/fhir"><status value="&x;"/></Observation>'),
    ("xxe-parameter-entity", DTD + '<!DOCTYPE o [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><Observation xmlns="http://hl7.org/fhir"/>'),
    ("external-dtd", DTD + '<!DOCTYPE Observation SYSTEM "http://127.0.0.1:9/o.dtd"><Observation xmlns="http://hl7.org/fhir"/>'),
    ("billion-laughs", DTD + '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]><Observation xmlns="http://hl7.org/fhir"><status value="&e;"/></Observation>'),
    ("quadratic-blowup", DTD + '<!DOCTYPE q [<!ENTITY a "' + "x" * 5000 + '">]><Observation xmlns="http://hl7.org/fhir"><status value="' + "&a;" * 2000 + '"/></Observation>'),
    ("internal-entity", DTD + '<!DOCTYPE o [<!ENTITY f "final">]><Observation xmlns="http://hl7.org/fhir"><status value="&f;"/></Observation>'),
    ("xinclude", '<Observation xmlns="http://hl7.org/fhir" xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/passwd" parse="text"/></Observation>'),
    ("undefined-entity", '<Observation xmlns="http://hl7.org/fhir"><status value="&nope;"/></Observation>'),
    ("cdata-value", '<Observation xmlns="http://hl7.org/fhir"><status><![CDATA[final]]></status></Observation>'),
    ("script-in-div", '<Observation xmlns="http://hl7.org/fhir"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div></text><status value="final"/></Observation>'),
]:
    add(f"xml-{name}", doc, XML, **UNPARSEABLE)
add("xml-processing-instruction", '<?magcds do="x"?>' + OBS_XML, XML, **EVALUATED)
add("xml-comment-everywhere", OBS_XML.replace("><", "><!-- c --><"), XML, **EVALUATED)

# --- structurally valid FHIR that cannot be evaluated
add("observation-no-status", obs(status=None), JSON, **UNPARSEABLE)
add("observation-no-subject", obs(subject=None), JSON, **NOT_EVALUATED)
add("observation-no-code", obs(code=None), JSON, **UNPARSEABLE)
add("observation-other-code", obs(code={"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}), JSON, **NOT_EVALUATED)
add("observation-bad-status-code", obs(status="sideways"), JSON, **UNPARSEABLE)
add("observation-bad-date", obs(effectiveDateTime="2026-13-45"), JSON, **UNPARSEABLE)
add("observation-bad-id", obs(id="has spaces and $"), JSON, **UNPARSEABLE)
add("observation-wrong-value-shape", obs(valueQuantity="25000"), JSON, **UNPARSEABLE)
add("observation-subject-not-reference", obs(subject="Patient/h"), JSON, **UNPARSEABLE)
add("observation-contained-loop", obs(contained=[{"resourceType": "Observation", "id": "c", "status": "final", "code": {"text": "x"}, "hasMember": [{"reference": "#c"}]}]), JSON, **EVALUATED)
add("parameters-no-observation", json.dumps({"resourceType": "Parameters", "parameter": [{"name": "history", "resource": json.loads(OBS_TEXT)}]}), JSON,
    evaluate=[400, "invalid-parameters"], validate=[400, "invalid-parameters"], notify=[200, "notification-queued"])
add("parameters-unknown-name", json.dumps({"resourceType": "Parameters", "parameter": [{"name": "obs", "resource": json.loads(OBS_TEXT)}]}), JSON,
    evaluate=[400, "invalid-parameters"], validate=[400, "invalid-parameters"], notify=[200, "notification-queued"])
add("parameters-value-not-resource", json.dumps({"resourceType": "Parameters", "parameter": [{"name": "observation", "valueString": "x"}]}), JSON,
    evaluate=[400, "invalid-parameters"], validate=[400, "invalid-parameters"], notify=[200, "notification-queued"])
add("bundle-entry-garbage", json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {"resourceType": "Observation", "status": 7}}, {"resource": json.loads(OBS_TEXT)}]}), JSON,
    evaluate=[200, "evaluated"], validate=[422, "unsupported-resource"], notify=[200, "notification-queued"])
add("bundle-all-entries-garbage", json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {"resourceType": "Observation", "status": 7}}]}), JSON,
    evaluate=[422, "nothing-evaluated"], validate=[422, "unsupported-resource"], notify=[200, "notification-queued"])

# --- oversized bodies
add("oversized-padding", OBS_TEXT[:-1] + ', "id2": "' + "x" * (LIMIT + 10) + '"}', JSON, **TOO_LARGE)
add("oversized-bundle", json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": json.loads(OBS_TEXT) | {"id": f"o{i}"}} for i in range(950)]}), JSON, **TOO_LARGE)
add("oversized-xml", '<Observation xmlns="http://hl7.org/fhir"><id value="' + "x" * (LIMIT + 10) + '"/></Observation>', XML, **dict(TOO_LARGE, cds=[415, "unsupported-media-type"]))

# --- CDS Hooks requests with wrong or missing fields, wrong prefetch
def cds(mutate):
    c = json.loads(json.dumps(CDS))
    mutate(c)
    return json.dumps(c)
def drop(*path):
    def m(c):
        d = c
        for p in path[:-1]: d = d[p]
        d.pop(path[-1], None)
    return m
def put(value, *path):
    def m(c):
        d = c
        for p in path[:-1]: d = d[p]
        d[path[-1]] = value
    return m
for name, mutate in [
    ("no-hook", drop("hook")), ("hook-number", put(7, "hook")), ("hook-other", put("order-sign", "hook")), ("hook-empty", put("", "hook")),
    ("no-hookinstance", drop("hookInstance")), ("hookinstance-not-uuid", put("abc", "hookInstance")), ("hookinstance-number", put(5, "hookInstance")),
    ("no-context", drop("context")), ("context-array", put([], "context")), ("context-string", put("x", "context")),
    ("no-patientid", drop("context", "patientId")), ("patientid-number", put(3, "context", "patientId")), ("patientid-empty", put("", "context", "patientId")),
    ("prefetch-array", put([], "prefetch")), ("prefetch-string", put("x", "prefetch")), ("prefetch-number", put(1, "prefetch")),
    ("prefetch-slot-string", put("Observation?code=x", "prefetch", "antiMagResults")), ("prefetch-slot-number", put(12, "prefetch", "antiMagResults")),
    ("prefetch-slot-array", put([OBS], "prefetch", "antiMagResults")), ("prefetch-slot-not-fhir", put({"foo": 1}, "prefetch", "antiMagResults")),
    ("prefetch-slot-bad-resource", put({"resourceType": "Observation", "status": 9}, "prefetch", "antiMagResults")),
    ("prefetch-slot-unknown-type", put({"resourceType": "Nonsense"}, "prefetch", "antiMagResults")),
    ("fhirserver-http", put("http://ehr.example.org/fhir", "fhirServer")), ("fhirserver-not-url", put("not a url", "fhirServer")),
    ("fhirserver-number", put(1, "fhirServer")), ("fhirauthorization-without-server", put({"access_token": "t", "token_type": "Bearer", "expires_in": 1, "scope": "s", "subject": "x"}, "fhirAuthorization")),
    ("fhirauthorization-string", lambda c: (put("https://ehr.example.org/fhir", "fhirServer")(c), put("token", "fhirAuthorization")(c))),
    ("fhirauthorization-mac", lambda c: (put("https://ehr.example.org/fhir", "fhirServer")(c), put({"access_token": "t", "token_type": "MAC", "expires_in": 1, "scope": "s", "subject": "x"}, "fhirAuthorization")(c))),
    ("extension-array", put([], "extension")),
]:
    add(f"cds-{name}", cds(mutate), "application/json", **CDS_BAD)
for name, body in [("not-json", "hello"), ("truncated", json.dumps(CDS)[:120]), ("array", "[]"), ("empty", ""), ("null", "null"),
                   ("deep", '{"hook":' * 3000 + '"x"' + "}" * 3000), ("duplicate-hook", json.dumps(CDS).replace('"hook": "patient-view"', '"hook": "patient-view", "hook": "order-sign"'))]:
    add(f"cds-{name}", body, "application/json", **CDS_BAD)
add("cds-wrong-content-type", json.dumps(CDS), "text/plain", cds=[415, "unsupported-media-type"])
add("cds-fhir-content-type-xml", json.dumps(CDS), "application/xml", cds=[415, "unsupported-media-type"])
add("cds-oversized", json.dumps(CDS)[:-1] + ', "pad": "' + "x" * (LIMIT + 10) + '"}', "application/json", cds=[413, "payload-too-large"])
add("cds-prefetch-huge-bundle", cds(put({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": OBS | {"id": f"p{i}"}} for i in range(800)]}, "prefetch", "antiMagResults")),
    "application/json", cds=[200, None])
add("cds-prefetch-other-patient", cds(put({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": OBS | {"subject": {"reference": "Patient/else"}}}]}, "prefetch", "antiMagResults")),
    "application/json", cds=[200, None])

# --- inputs AFL++ found (tests/fuzz/run.sh) that made the Firely parsers throw undocumented exceptions (were 500s)
add("fuzz-empty-property-name", b'{"resourceType": "soxrle", ":esource": {"": {"ree": "Observation", "statusE: 7}}]}', JSON, **UNPARSEABLE_ALL)
add("fuzz-empty-property-name-in-bundle", b'{"resourceType": "Bundle", "typ`": {"": "batch", "entry": [{"resource": {"resourceType": "Observataon"] "status": 7}},}', JSON, **UNPARSEABLE_ALL)
add("fuzz-invalid-cast", b'{\n  "resourceType": "Observation",\n  "id": "um",\n  "meta": { "versionId": "3"\n  },\n  "_dentifier": [ {\n  "sy": "9",\n  "valUe": "UM"{\n  "sy"  "status": "",\n  "category": [\n    {   "codyng": [\n    {   "system": "ht",\n  "co\x00d": "la"\n  ',
    JSON, **UNPARSEABLE_ALL)
add("fuzz-xml-attribute-on-primitive", b'<Observation xmlns="r"><id value="h1"/><stauus value="final"/><code><coding><system x="h"/><code value="3-2"/></coding></code><subject><reference value="h"/></subject><effectiZeDateTime value="202Z"/><valueQuantity><us vaue="0"/><unit Value="BTU"/></valueQuantity></Observation>', XML, **UNPARSEABLE)
add("fuzz-xml-attribute-case", b'<Observation xmlns="r"><id value="h1"/><status vaLue="final"/><code><coding><system value="http://loorg"/><code value="3-2"/></coding></code><subject><reference value="h"/></subject><effectiveDateTime value="2026-03-02T09:15:00X"/><valueQuantity><value value="0"/><unit value="BTU"/></valueQuantity></Observation>', XML, **UNPARSEABLE)

add("fuzz-cds-prefetch-invalid-status-code", cds(put({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": OBS | {"status": "fin!l"}}]}, "prefetch", "antiMagResults")),
    "application/json", cds=[400, "invalid-cds-request"])
add("fuzz-bundle-entry-invalid-status-code", json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": OBS | {"status": "fin!l"}}]}), JSON,
    evaluate=[422, "nothing-evaluated"], validate=[422, "unsupported-resource"], notify=[200, "notification-queued"])

add("fuzz-bundle-entry-not-a-list", b'{"resourceType": "Bundle", "type": "batch", "entry": {"resource": {"resourceType": "Observation", "status": 7}}}', JSON, **UNPARSEABLE_ALL)

# --- write
if os.path.exists(os.path.join(HERE, "cases")): shutil.rmtree(os.path.join(HERE, "cases"))
os.makedirs(os.path.join(HERE, "cases"))
manifest = []
for i, (name, body, ctype, expect) in enumerate(cases):
    ext = "xml" if "xml" in ctype and not name.startswith("cds") else "json" if "json" in ctype else "txt"
    file = f"{i:03d}-{name}.{ext}"
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    with open(os.path.join(HERE, "cases", file), "wb") as f: f.write(data)
    manifest.append({"file": file, "contentType": ctype, "expect": expect})
with open(os.path.join(HERE, "manifest.json"), "w") as f:
    json.dump({"bodyLimit": LIMIT, "cases": manifest}, f, indent=1)
print(len(manifest), "cases")
