"""Turns a pcap/pcapng capture into a CICFlowMeter flow table, optionally labelled by windows.

python -m experiments.extract_flows --pcap=capture.pcap --out=flows.csv
python -m experiments.extract_flows --pcap=capture.pcap --out=flows.csv --windows=windows.csv

Needs the optional flow meter: pip install 'flowjax[pcap]'. The windows file is a
CSV with columns label,host,start,end (epoch seconds); see `flowjax.pcap.label_flows`.
"""

from absl import app, flags, logging

from flowjax.pcap import extract_flows, label_flows

flags.DEFINE_string("pcap", None, "capture file (pcap or pcapng)", required=True)
flags.DEFINE_string("out", None, "flow table to write (CSV)", required=True)
flags.DEFINE_string("windows", None, "attack windows CSV; adds a label column when given")
flags.DEFINE_string("benign", "BENIGN", "label of flows outside every attack window")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    rows = extract_flows(FLAGS.pcap, FLAGS.out)
    logging.info("%s: %d flows -> %s", FLAGS.pcap, rows, FLAGS.out)
    if FLAGS.windows:
        counts = label_flows(FLAGS.out, FLAGS.windows, FLAGS.out, benign=FLAGS.benign)
        for label, n in sorted(counts.items()):
            logging.info("label %s: %d flows", label, n)


if __name__ == "__main__":
    app.run(main)
