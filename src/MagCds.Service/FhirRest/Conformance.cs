using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Core;

namespace MagCds.Service.FhirRest;

/// <summary>
/// The conformance resources the door serves: the OperationDefinition exactly as published in fhir-profiles/
/// (embedded at build time, so there is one copy), and a CapabilityStatement that advertises it.
/// </summary>
public sealed class Conformance
{
    public OperationDefinition OperationDefinition { get; }
    public CapabilityStatement CapabilityStatement { get; }

    public Conformance(string knowledgeVersion)
    {
        using var stream = typeof(Conformance).Assembly.GetManifestResourceStream("fhir-profiles/OperationDefinition-mag-evaluate.json")
                           ?? throw new InvalidOperationException("fhir-profiles/OperationDefinition-mag-evaluate.json is not embedded.");
        using var reader = new StreamReader(stream);
        OperationDefinition = new FhirJsonDeserializer().Deserialize<OperationDefinition>(reader.ReadToEnd());

        CapabilityStatement = new CapabilityStatement
        {
            Id = "magcds",
            Url = CanonicalUrls.Base + "/CapabilityStatement/magcds",
            Name = "MagCds",
            Title = "MagCds anti-MAG IgM clinical decision support",
            Status = PublicationStatus.Active,
            // Fixed (the knowledge version is the date of what the service knows), so metadata is deterministic.
            DateElement = new FhirDateTime("2026-11-26"),
            Kind = CapabilityStatementKind.Instance,
            Software = new CapabilityStatement.SoftwareComponent { Name = "MagCds", Version = knowledgeVersion },
            Implementation = new CapabilityStatement.ImplementationComponent { Description = "MagCds FHIR REST door" },
            FhirVersion = FHIRVersion.N4_0_1,
            Format = ["json", "xml", FhirWire.JsonMediaType, FhirWire.XmlMediaType],
            Rest =
            [
                new CapabilityStatement.RestComponent
                {
                    Mode = CapabilityStatement.RestfulCapabilityMode.Server,
                    Documentation = "Stateless: MagCds stores nothing; outputs are returned to the caller.",
                    Resource =
                    [
                        new CapabilityStatement.ResourceComponent
                        {
                            Type = "Observation",
                            Operation =
                            [
                                new CapabilityStatement.OperationComponent { Name = OperationDefinition.Code, Definition = OperationDefinition.Url },
                            ],
                        },
                        new CapabilityStatement.ResourceComponent
                        {
                            Type = "OperationDefinition",
                            Interaction = [new CapabilityStatement.ResourceInteractionComponent { Code = CapabilityStatement.TypeRestfulInteraction.Read }],
                        },
                    ],
                },
            ],
        };
    }
}
