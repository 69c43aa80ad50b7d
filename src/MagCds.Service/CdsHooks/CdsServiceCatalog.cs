using MagCds.Core;
using MagCds.Core.Evaluation;
using Microsoft.Extensions.Options;

namespace MagCds.Service.CdsHooks;

/// <summary>The CDS Services MagCds offers, and their prefetch templates.</summary>
public sealed class CdsServiceCatalog
{
    public const string PatientView = "magcds-patient-view";
    public const string OrderSelect = "magcds-order-select";
    public const string OrderSign = "magcds-order-sign";

    /// <summary>Prefetch key of the patient's anti-MAG results (newest first).</summary>
    public const string ResultsKey = "antiMagResults";
    public const string PatientKey = "patient";

    public IReadOnlyList<ServiceDescriptor> Services { get; }

    /// <summary>The FHIR search for the patient's anti-MAG results, with {0} for the patient id.</summary>
    public string ResultsQueryTemplate { get; }

    public CdsServiceCatalog(Evaluator evaluator, IOptions<CdsHooksOptions> options)
    {
        // All recognised codes (LOINC 39087-2 and configured local codes) in one token search, newest first.
        string codes = string.Join(",", evaluator.RecognisedCodes.Order(StringComparer.Ordinal));
        ResultsQueryTemplate = $"Observation?patient={{0}}&code={codes}&_sort=-date&_count={options.Value.MaxResults}";
        var prefetch = new Dictionary<string, string>
        {
            [PatientKey] = "Patient/{{context.patientId}}",
            [ResultsKey] = string.Format(System.Globalization.CultureInfo.InvariantCulture, ResultsQueryTemplate, "{{context.patientId}}"),
        };
        Services =
        [
            new ServiceDescriptor("patient-view", "MagCds: anti-MAG IgM result interpretation",
                $"Interprets the patient's latest anti-MAG IgM result (LOINC {CanonicalUrls.AntiMagLoinc}) against its laboratory's reference range or a known assay profile, with the trend of earlier results, and cites its sources. A card appears when the result is raised, cannot be interpreted safely, or has moved between raised and not raised since the previous result.",
                PatientView, prefetch, null),
            new ServiceDescriptor("order-select", "MagCds: anti-MAG IgM when ordering",
                "When an anti-MAG IgM test is selected, shows the latest result, its interpretation and trend, and what the test is for.",
                OrderSelect, prefetch, null),
            new ServiceDescriptor("order-sign", "MagCds: anti-MAG IgM when signing",
                "When an anti-MAG IgM order is signed, shows the latest result, its interpretation and trend, and what the test is for.",
                OrderSign, prefetch, null),
        ];
    }

    public ServiceDescriptor? Find(string id) => Services.FirstOrDefault(s => s.Id == id);
}
