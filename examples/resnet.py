"""A ResNet (BasicBlock and Bottleneck residual blocks), written as PyTorch code.

Run: python3 examples/resnet.py

Only the three imports below name graphc (tests/models/ also runs this file with torch).
The blocks mutate as real ResNets do: ``nn.ReLU(inplace=True)`` and ``out += identity``;
the compiler turns those writes into pure dataflow and still fuses BatchNorm, the
residual add and the ReLU after each convolution.
"""

from __future__ import annotations

import graphc as torch
import graphc.nn as nn
import graphc.nn.functional as F  # noqa: F401  (model files import it; kept as written)


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1, dilation: int = 1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, groups=groups,
                     dilation=dilation, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes: int = 10, base: int = 16,
                 small_inputs: bool = True):
        super().__init__()
        self.cin = base
        if small_inputs:  # 32x32 images: a 3x3 stem, no pooling
            self.stem = nn.Sequential(nn.Conv2d(3, base, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(base), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False),
                                      nn.BatchNorm2d(base), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, stride=2, padding=1))
        self.layer1 = self._stage(block, base, layers[0])
        self.layer2 = self._stage(block, base * 2, layers[1], stride=2)
        self.layer3 = self._stage(block, base * 4, layers[2], stride=2)
        self.layer4 = self._stage(block, base * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(base * 8 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _stage(self, block, width: int, blocks: int, stride: int = 1):
        downsample = None
        if stride != 1 or self.cin != width * block.expansion:
            downsample = nn.Sequential(conv1x1(self.cin, width * block.expansion, stride),
                                       nn.BatchNorm2d(width * block.expansion))
        stage = [block(self.cin, width, stride, downsample)]
        self.cin = width * block.expansion
        stage += [block(self.cin, width) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18(**kw) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], **kw)


def resnet50(**kw) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kw)


def main() -> int:
    import graphc

    graphc.manual_seed(0)
    model = ResNet(BasicBlock, [1, 1, 1, 1]).eval()
    x = graphc.randn(4, 3, 32, 32)
    with graphc.no_grad():
        eager = model(x)
        compiled = graphc.compile(model)
        out = compiled(x)
    err = (out - eager).abs().max().item()
    print(f"ResNet (BasicBlock x4): logits {tuple(out.shape)}")
    print(f"max |compiled - eager| = {err:.2e} (tolerance 1e-04)")
    print(f"eager runs: {len(compiled.compiled.eager_runs)}")
    return 0 if err < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
