using Hl7.Fhir.Serialization;
using MagCds.Core.Evaluation;
using MagCds.Core.Knowledge;
using MagCds.Service.CdsHooks;
using MagCds.Service.FhirRest;
using Microsoft.Extensions.Options;

namespace MagCds.Fuzz;

/// <summary>
/// One fuzz input through the code the doors run on a request body: the UTF-8 check, the FHIR JSON or XML parser
/// (FhirWire.Parse), the $mag-evaluate mapping and the evaluation with its outputs, and for a JSON object the CDS Hooks
/// request reader and the evaluation of its prefetch. A FhirRequestException is the documented refusal; any other
/// exception, a hang or a crash is a finding.
/// </summary>
public static class Target
{
    private static readonly Evaluator Evaluator = new(KnowledgeLoader.Load(), new EvaluationOptions());
    private static readonly ServiceDescriptor PatientView =
        new CdsServiceCatalog(Evaluator, Options.Create(new CdsHooksOptions())).Services.First(s => s.Hook == "patient-view");

    public static void Run(byte[] input)
    {
        if (!System.Text.Unicode.Utf8.IsValid(input)) return; // refused by FhirWire.ReadBodyAsync before any parser runs
        var body = new ReadOnlyMemory<byte>(input);
        try
        {
            var format = input.SkipWhile(b => b is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t').FirstOrDefault() == '<' ? FhirFormat.Xml : FhirFormat.Json;
            var mapped = MagEvaluateOperation.ToRequest(FhirWire.Parse(body, format));
            foreach (var r in Evaluator.Evaluate(mapped.Request).Outputs) _ = r.ToJson();
        }
        catch (FhirRequestException) { }

        try
        {
            var call = CdsRequestReader.Read(body, PatientView, allowInsecureFhirServer: false);
            var inputs = call.Slot(CdsServiceCatalog.ResultsKey) is PrefetchSlot.Found { Resource: Hl7.Fhir.Model.Bundle b }
                ? b.Entry.Select(e => e.Resource).OfType<Hl7.Fhir.Model.Observation>().Select(o => new EvaluationInput(o, null, "prefetch")).ToList()
                : [];
            Evaluator.Evaluate(Evaluator.LatestWithHistory(inputs));
        }
        catch (FhirRequestException) { }
    }
}
