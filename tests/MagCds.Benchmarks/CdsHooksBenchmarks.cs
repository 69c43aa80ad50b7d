using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using MagCds.Core.Evaluation;
using MagCds.LoadTools;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Service.CdsHooks;
using MagCds.Service.FhirRest;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MagCds.Benchmarks;

/// <summary>
/// The CDS Hooks door's work for the load test's call (tests/load/cds-hooks-wrk.sh: patient-view with 20 prefetched
/// results), in-process and without HTTP, split into its costs: reading the call (the JSON document and the Firely
/// validating parse of the 20 Observations), the whole hook (read, evaluate the latest result with its 19 earlier
/// ones, build the card, write the response JSON), and checking the EHR's JWT signature and claims (ES384 and RS384).
/// These are CPU time on one core per call; the load test shows what two cores make of them under HTTP.
/// The prefetched Bundle's parse is also measured alone, as MagCds reads it and without Firely's validator (which
/// MagCds keeps: it refuses malformed results), so what the validation costs is visible.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(BenchmarkConfig))]
public class CdsHooksBenchmarks
{
    private const string Audience = "https://magcds.example/cds-services/magcds-patient-view";
    private byte[] _call = [];
    private byte[] _prefetch = [];
    private static readonly FhirJsonDeserializer Unvalidated = new(new DeserializerSettings { AcceptUnknownMembers = true, Validator = null });
    private Evaluator _evaluator = null!;
    private CdsServiceCatalog _catalog = null!;
    private ServiceDescriptor _service = null!;
    private PatientResults _results = null!;
    private CardBuilder _cards = null!;
    private CdsHooksMetrics _metrics = null!;
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false };
    private string _es384Token = "", _rs384Token = "";
    private TokenValidationParameters _es384 = null!, _rs384 = null!;

    [GlobalSetup]
    public void Setup()
    {
        _call = Encoding.UTF8.GetBytes(LoadInputs.PatientViewCall());
        using (var doc = JsonDocument.Parse(_call))
            _prefetch = Encoding.UTF8.GetBytes(doc.RootElement.GetProperty("prefetch").GetProperty(CdsServiceCatalog.ResultsKey).GetRawText());
        _evaluator = TestInputs.NewEvaluator();
        var options = Options.Create(new CdsHooksOptions());
        _catalog = new CdsServiceCatalog(_evaluator, options);
        _service = _catalog.Find(CdsServiceCatalog.PatientView) ?? throw new InvalidOperationException("no patient-view service");
        _metrics = new CdsHooksMetrics();
        // Prefetch is complete in this call, so no HTTP client is ever created.
        _results = new PatientResults(new NoHttpClients(), _catalog, options, _metrics, NullLogger<PatientResults>.Instance);
        _cards = new CardBuilder(_evaluator);

        (_es384Token, _es384) = TokenAndCheck(SecurityAlgorithms.EcdsaSha384);
        (_rs384Token, _rs384) = TokenAndCheck(SecurityAlgorithms.RsaSha384);

        // Never measure an error path: the call must give one warning card, the token must be valid.
        int cards = JsonDocument.Parse(Hook().GetAwaiter().GetResult()).RootElement.GetProperty("cards").GetArrayLength();
        if (cards != 1) throw new InvalidOperationException($"expected 1 card, got {cards}");
        if (ParsePrefetch() != 20 || ParsePrefetchUnvalidated() != 20) throw new InvalidOperationException("the prefetch does not parse to 20 entries");
        if (!ValidateJwtEs384().GetAwaiter().GetResult() || !ValidateJwtRs384().GetAwaiter().GetResult())
            throw new InvalidOperationException("a benchmark token does not validate");
    }

    [GlobalCleanup]
    public void Cleanup() => _metrics.Dispose();

    [Benchmark]
    public int ReadCall() => CdsRequestReader.Read(_call, _service, allowInsecureFhirServer: false).Prefetch.Count;

    /// <summary>The 20 prefetched Observations (a 13.8 KB searchset Bundle), parsed as the door parses them.</summary>
    [Benchmark]
    public int ParsePrefetch() => ((Bundle)FhirWire.Parse(_prefetch, FhirFormat.Json, ignoreUnknownMembers: true).Resource).Entry.Count;

    /// <summary>The same parse without Firely's validator (<c>Validator = null</c>, as its Ostrich mode): not what MagCds does.</summary>
    [Benchmark]
    public int ParsePrefetchUnvalidated()
    {
        var reader = new Utf8JsonReader(_prefetch);
        return Unvalidated.TryDeserializeResource(ref reader, out var bundle, out _) ? ((Bundle)bundle).Entry.Count : -1;
    }

    [Benchmark]
    public async Task<byte[]> Hook()
    {
        var call = CdsRequestReader.Read(_call, _service, allowInsecureFhirServer: false);
        var (cards, _) = await CdsHooksEndpoints.AnswerAsync(call, _results, _evaluator, _cards, "https://magcds.example/knowledge", CancellationToken.None);
        return JsonSerializer.SerializeToUtf8Bytes(new CdsResponse(cards), CdsJson.Options);
    }

    /// <summary>The load test's token: ES384 (ECDSA P-384).</summary>
    [Benchmark]
    public async Task<bool> ValidateJwtEs384() => (await _handler.ValidateTokenAsync(_es384Token, _es384)).IsValid;

    /// <summary>The same check of an RS384 token (RSA 2048), the other algorithm CDS Hooks allows and the one Epic uses.</summary>
    [Benchmark]
    public async Task<bool> ValidateJwtRs384() => (await _handler.ValidateTokenAsync(_rs384Token, _rs384)).IsValid;

    private (string Token, TokenValidationParameters Parameters) TokenAndCheck(string algorithm)
    {
        var key = LoadInputs.NewEhrKey(algorithm);
        return (LoadInputs.Token(_handler, key, Audience, DateTime.UtcNow, TimeSpan.FromHours(6)), new TokenValidationParameters
        {
            ValidIssuer = LoadInputs.Issuer, ValidAudience = Audience, IssuerSigningKey = key,
            ValidAlgorithms = ["ES384", "RS384"], RequireSignedTokens = true, RequireExpirationTime = true, ValidateLifetime = true,
        });
    }

    private sealed class NoHttpClients : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => throw new InvalidOperationException("the benchmark's prefetch is complete");
    }
}
